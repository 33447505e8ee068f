"""Regenerate docs/config.schema.json and the reference part of docs/configuration.md.

    python tools/export_schema.py           # write both
    python tools/export_schema.py --check   # exit 1 when either is stale (CI)

Both are generated from the pydantic models, so the docs cannot drift from the code; a test
checks that the committed files equal a fresh export.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from core.config_base import MAX_NUMBER  # noqa: E402
from infra.config_loader import FILES  # noqa: E402
from infra.schema_walk import is_mapping, model_of, unwrap  # noqa: E402
from infra.settings import VigilConfig, export_schema, schema_text  # noqa: E402
from strategy import registry  # noqa: E402

SCHEMA_PATH = ROOT / "docs" / "config.schema.json"
DOC_PATH = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED REFERENCE (tools/export_schema.py) -->"
END = "<!-- END GENERATED REFERENCE -->"


_SCALARS = {
    "Decimal": "number",
    "float": "number",
    "int": "integer",
    "bool": "true/false",
    "str": "text",
    "Path": "path",
    "Any": "any",
}


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    base = unwrap(tp)
    nullable = base is not tp
    if isinstance(base, type) and issubclass(base, Enum):
        name = "one of " + ", ".join(str(m.value) for m in base)
    elif is_mapping(base):
        k, v = get_args(base)
        name = f"map {_type_name(k)} -> {_type_name(v)}"
    elif get_origin(base) in (tuple, list):
        name = f"list of {_type_name(get_args(base)[0])}"
    elif isinstance(base, type):
        name = _SCALARS.get(base.__name__, base.__name__)
    else:
        name = "any"
    return f"{name} or null" if nullable else name


def _constraints(info: Any) -> str:
    out = []
    metadata = list(info.metadata)
    if is_mapping(info.annotation):  # bounds on the values, e.g. dict[str, Annotated[...]]
        for meta in getattr(get_args(unwrap(info.annotation))[-1], "__metadata__", ()):
            metadata += getattr(meta, "metadata", [meta])  # a Field(...) holds its bounds
    for meta in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                out.append(f"{sign} {getattr(meta, attr)}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            alts = re.fullmatch(r"\^\(([\w|]+)\)\$", pattern)
            out.append("one of " + ", ".join(alts.group(1).split("|")) if alts else pattern)
    if any(word in _type_name(info.annotation) for word in ("integer", "number")):
        # core/config_base.MAX_NUMBER bounds every number that has no tighter bound of its own
        if not any(sign in text for text in out for sign in ("<=", "<")):
            out.append(f"<= {MAX_NUMBER:.0e}".replace("e+", "e"))
        if not any(sign in text for text in out for sign in (">=", ">")):
            out.insert(0, f">= -{MAX_NUMBER:.0e}".replace("e+", "e"))
        if "number" in _type_name(info.annotation):
            out.append("finite")
    return ", ".join(out)


def _default(value: Any) -> str:
    """A default as one would write it in YAML."""
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_default(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_default(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _row(name: str, info: Any, value: Any) -> str:
    return (
        f"| `{name}` | {_cell(_type_name(info.annotation))} | "
        f"`{_default(value).replace('|', '/')}` | {_cell(_constraints(info))} | "
        f"{_cell(info.description or '')} |"
    )


_HEADER = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]


def _section(title: str, model: type[BaseModel], instance: Any, lines: list[str]) -> None:
    """One table per model; nested models get their own table after it."""
    nested: list[tuple[str, type[BaseModel], Any]] = []
    rows = []
    for name, info in model.model_fields.items():
        sub = model_of(info.annotation)
        if sub is not None:
            nested.append((f"{title}.{name}", sub, getattr(instance, name)))
        else:
            rows.append(_row(name, info, getattr(instance, name)))
    if rows:
        lines += [f"### `{title}`", "", *_HEADER, *rows, ""]
    for sub_title, sub_model, sub_value in nested:
        _section(sub_title, sub_model, sub_value, lines)


def render_reference() -> str:
    """The field tables of docs/configuration.md, generated from the models' descriptions."""
    lines = [
        BEGIN,
        "",
        "Generated from the models by `python tools/export_schema.py`; do not edit by hand.",
        "Defaults are the built-in ones (the shipped config/*.yaml repeats them).",
        "",
    ]
    config = VigilConfig()
    for file_name, keys in FILES.items():
        lines += [f"## {file_name}", ""]
        fields = {k: VigilConfig.model_fields[k] for k in keys if k != "strategies"}
        top = [
            _row(k, f, getattr(config, k)) for k, f in fields.items() if not model_of(f.annotation)
        ]
        if top:
            lines += ["### top level", "", *_HEADER, *top, ""]
        for k, f in fields.items():
            sub = model_of(f.annotation)
            if sub is not None:
                _section(k, sub, getattr(config, k), lines)
        if "strategies" in keys:
            spec_model = model_of(get_args(VigilConfig.model_fields["strategies"].annotation)[1])
            assert spec_model is not None
            _section("strategies.<name>", spec_model, spec_model(), lines)
            for name in registry.known():
                params = registry.get(name).Params
                _section(f"strategies.{name}.params", params, params(), lines)
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(doc: str, reference: str) -> str:
    """`doc` with the text between the markers replaced by `reference`."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < 0:
        raise ValueError(f"markers missing: the doc needs {BEGIN!r} ... {END!r}")
    return doc[:start] + reference + doc[end + len(END) + 1 :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    args = parser.parse_args(argv)
    doc = DOC_PATH.read_text(encoding="utf-8")
    fresh_doc = splice(doc, render_reference())
    if args.check:
        stale = [
            str(p)
            for p, ok in (
                (SCHEMA_PATH, _same(SCHEMA_PATH, schema_text())),
                (DOC_PATH, doc == fresh_doc),
            )
            if not ok
        ]
        for path in stale:
            print(f"stale: {path}; run python tools/export_schema.py")
        return 1 if stale else 0
    export_schema(SCHEMA_PATH)
    DOC_PATH.write_text(fresh_doc, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH} and the reference in {DOC_PATH}")
    return 0


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


if __name__ == "__main__":
    raise SystemExit(main())
