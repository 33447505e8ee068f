"""The operator's views of the audit log: records in order, the last few as readable lines.

These read without checking hashes (that is `verify`'s job, infra/audit_verify.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

from core.errors import AuditCorrupted
from infra.audit_format import format_ts, log_files, open_day, parse_line, record_problem


@contextmanager
def _day(path: Path) -> Iterator[IO[bytes]]:
    """open_day, with a damaged compressed file said in one line (AuditCorrupted)."""
    try:
        with open_day(path) as f:
            yield f
    except (OSError, EOFError) as exc:
        if not path.name.endswith(".gz"):
            raise
        raise AuditCorrupted(
            f"{path.name}: compressed day file unreadable ({exc}); run `vigil audit verify`"
        ) from None


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Records in chain order, without checking hashes (that is `verify`'s job).

    An unreadable line raises AuditCorrupted, except an incomplete final line of the newest file:
    the writer may be in the middle of it, or it is a crash artefact the next open() recovers.
    """
    files = log_files(Path(directory))
    for index, path in enumerate(files):
        with _day(path) as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n") and index == len(files) - 1:
                    return
                rec, why = parse_line(raw) if raw.endswith(b"\n") else (None, "torn line")
                why = why or record_problem(rec) or ""
                if why:
                    raise AuditCorrupted(
                        f"{path.name} line {lineno}: {why}; run `vigil audit verify` for details"
                    )
                assert rec is not None
                yield rec


def tail(directory: Path, n: int = 20, kinds: set[str] | None = None) -> list[str]:
    """The last `n` records (of `kinds`, when given) as readable lines, oldest first.

    Unreadable lines are shown in place (always, whatever `kinds`) rather than stopping the view.
    """
    if n <= 0:
        return []
    files = log_files(Path(directory))
    picked: list[str] = []
    for index in range(len(files) - 1, -1, -1):
        path = files[index]
        with _day(path) as f:
            lines = f.read().split(b"\n")
        last = lines.pop()  # b"" after a final newline, else an incomplete line
        entries = [(lineno, raw, "") for lineno, raw in enumerate(lines, 1)]
        if last and index < len(files) - 1:
            # In the newest file it may be a line being written; in an older one it is damage.
            entries.append((len(lines) + 1, last, "torn line"))
        for lineno, raw, torn in reversed(entries):
            rec, why = (None, torn) if torn else parse_line(raw + b"\n")
            why = why or record_problem(rec) or ""
            if why:
                picked.append(
                    f"{path.name} line {lineno}: unreadable ({why}); run vigil audit verify"
                )
            elif rec is not None and (kinds is None or rec["kind"] in kinds):
                picked.append(format_record(rec))
            if len(picked) >= n:
                return picked[::-1]
    return picked[::-1]


_SUMMARY_LIMIT: Final = 320
_VALUE_LIMIT: Final = 60


def format_record(rec: Mapping[str, Any]) -> str:
    """One line: UTC time, #seq, kind, then the data as key=value (nested keys dotted)."""
    ts = rec.get("ts")
    when = format_ts(ts) if type(ts) is int else "?"
    data = rec.get("data")
    pairs = list(_flatten(data, "")) if isinstance(data, Mapping) else []
    summary = " ".join(f"{key}={value}" for key, value in pairs)
    if len(summary) > _SUMMARY_LIMIT:
        summary = summary[: _SUMMARY_LIMIT - 1] + "…"
    return f"{when} #{rec.get('seq', '?')} {rec.get('kind', '?')} {summary}".rstrip()


def _flatten(data: Mapping[str, Any], prefix: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and depth < 2:
            yield from _flatten(value, name + ".", depth + 1)
        else:
            yield name, _short(value)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}" if not value else "{…}"
    if isinstance(value, list):
        if len(value) <= 5 and all(not isinstance(v, Mapping | list) for v in value):
            return "[" + ",".join(_short(v) for v in value) + "]"
        return f"[{len(value)} items]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if len(text) > _VALUE_LIMIT:
        text = text[: _VALUE_LIMIT - 1] + "…"
    if isinstance(value, str) and (not text or any(c in text for c in ' ="\n\t')):
        text = json.dumps(text, ensure_ascii=False)
    return text
