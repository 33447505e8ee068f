"""`vigil debug-bundle`: the evidence for an incident in one archive, secrets removed.

Every section is gathered on its own: one that fails says why in its file and in README.txt, and
the others are still written. Nothing is opened for writing except the archive: state.db is read
through a read-only SQLite connection, the audit log is only read, the daemon is only asked over
its loopback HTTP endpoints. Every file passes through `scrub()` before it enters the archive.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from infra.audit_verify import verify
from infra.config_loader import LoadedConfig
from infra.runtime_paths import ResolvedPaths
from infra.secrets import SECRET_ENV_NAMES, Secrets, load_secrets, looks_secret, redact
from infra.settings import redacted_dump
from infra.state_store import StateStore
from runner import __version__, exit_codes

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@")
_PACKAGES = ("ccxt", "aiohttp", "pydantic", "apprise", "prometheus-client", "pyarrow", "numpy")


def add_debug_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    p = sub.add_parser(
        "debug-bundle",
        help="gather config, versions, health, metrics, audit, state and logs into one archive",
        epilog=epilog + " Exit 0 when the archive was written (sections that could not be "
        "gathered say why inside it), 2 when --out exists or cannot be written.",
        description="Writes a tar.gz with the redacted config and its hash, versions, the "
        "running daemon's /health and /metrics (or 'not running'), the last audit records, "
        "audit and state.db integrity results, a state summary (positions, open orders, "
        "breakers) and the log tail. Secrets from the environment never enter it.",
    )
    common(p)
    p.add_argument(
        "--out", type=Path, help="archive path (default: ./vigil-debug-<UTC time>.tar.gz)"
    )
    p.add_argument(
        "--audit-records", type=int, default=200, help="last audit records to include (200)"
    )
    p.add_argument("--log-lines", type=int, default=2000, help="log lines to include (2000)")
    p.add_argument(
        "--log-file",
        type=Path,
        help="read the log tail from this file instead of journald (e.g. when stderr is "
        "redirected to a file)",
    )
    p.add_argument(
        "--unit", default="vigil", help="systemd unit whose journal to read (default vigil)"
    )
    p.add_argument(
        "--replay",
        action="store_true",
        help="bundle the replay daemon's files (<data_dir>/replay) instead of the live one's",
    )


@dataclass
class Bundle:
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, text: str, note: str) -> None:
        self.files[name] = text
        self.notes.append(f"{name:20} {note}")


def secret_values(env: Mapping[str, str], secrets: Secrets) -> list[str]:
    """Every string that must not enter the bundle: the secrets module's own list plus the
    value of any VIGIL_* variable whose name looks like a credential."""
    found = set(secrets.values())
    for name, value in env.items():
        if not value or len(value) < 4:
            continue
        if name in SECRET_ENV_NAMES or (
            name.startswith("VIGIL_") and looks_secret(name.removeprefix("VIGIL_"))
        ):
            found.add(value)
    return sorted(found, key=lambda s: (-len(s), s))


def scrub(text: str, secrets: Secrets, extra: list[str]) -> str:
    text = redact(text, secrets)
    for value in extra:
        text = text.replace(value, "***")
    return _USERINFO.sub(r"\1***@", text)


# --------------------------------------------------------------------------- sections


def _config(loaded: LoadedConfig) -> str:
    return json.dumps(
        {
            "config_hash": loaded.config_hash,
            "sources": list(loaded.sources),
            "warnings": list(loaded.warnings),
            "config": redacted_dump(loaded.config),
        },
        indent=2,
        sort_keys=True,
    )


def _versions() -> str:
    out: dict[str, Any] = {
        "vigil": __version__,
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    with contextlib.suppress(OSError):
        release = Path("/etc/os-release").read_text()
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', release, re.M)
        if pretty:
            out["os"] = pretty.group(1)
    return json.dumps(out, indent=2)


def _running_pid(paths: ResolvedPaths) -> int | None:
    from runner.daemon_link import locked_pid

    return locked_pid(paths)


def _daemon(loaded: LoadedConfig, paths: ResolvedPaths, bundle: Bundle) -> None:
    pid = _running_pid(paths)
    port_file = paths.health_dir / "http_port"
    if pid is None:
        text = "not running (no live pid in the lock file)\n"
        bundle.add("health.json", text, "not running")
        bundle.add("metrics.txt", text, "not running")
        return
    try:
        port = int(port_file.read_text().strip())
    except (OSError, ValueError):
        text = f"running as pid {pid}, but no HTTP port in {port_file} (http.enabled false?)\n"
        bundle.add("health.json", text, f"pid {pid}, no HTTP endpoint")
        bundle.add("metrics.txt", text, f"pid {pid}, no HTTP endpoint")
        return
    host = loaded.config.http.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    for route, name in (("/health", "health.json"), ("/metrics", "metrics.txt")):
        url = f"http://{host}:{port}{route}"
        try:
            # A 503 from /health is an answer too (an unhealthy daemon): read its body.
            with urllib.request.urlopen(url, timeout=5) as resp:
                body, status = resp.read().decode("utf-8", "replace"), resp.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read().decode("utf-8", "replace"), exc.code
        except OSError as exc:
            bundle.add(name, f"pid {pid}: {url} did not answer: {exc}\n", "no answer")
            continue
        bundle.add(name, body, f"pid {pid}, HTTP {status}")


def _audit_tail(paths: ResolvedPaths, n: int) -> tuple[str, str]:
    files = sorted(paths.audit_dir.glob("audit-*.jsonl*"))
    if not files:
        return "", f"no audit files in {paths.audit_dir}"
    lines: deque[str] = deque(maxlen=max(n, 0))
    for f in files[-7:]:  # the last week of days is plenty for a few hundred records
        if f.suffix == ".gz":
            import gzip

            with gzip.open(f, "rt", encoding="utf-8", errors="replace") as fh:
                lines.extend(line.rstrip("\n") for line in fh)
        else:
            with f.open(encoding="utf-8", errors="replace") as fh:
                lines.extend(line.rstrip("\n") for line in fh)
    return "\n".join(lines) + ("\n" if lines else ""), f"last {len(lines)} records"


def _integrity(paths: ResolvedPaths) -> tuple[str, str]:
    if not paths.audit_dir.is_dir():
        res = None
        lines = [f"audit log: none yet at {paths.audit_dir}"]
    else:
        res = verify(paths.audit_dir)
        lines = [res.summary()]
    state_ok = True
    if paths.state_db.exists():
        try:
            con = _ro(paths.state_db)
            try:
                rows = [str(r[0]) for r in con.execute("PRAGMA quick_check")]
            finally:
                con.close()
            state_ok = rows == ["ok"]
            lines.append(f"state.db quick_check: {', '.join(rows)}")
        except sqlite3.Error as exc:
            state_ok = False
            lines.append(f"state.db quick_check could not run: {exc}")
    else:
        lines.append(f"state.db: none at {paths.state_db}")
    ok = (res is None or res.ok) and state_ok
    return "\n".join(lines) + "\n", "OK" if ok else "PROBLEMS FOUND (see file)"


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _state(paths: ResolvedPaths) -> tuple[str, str]:
    if not paths.state_db.exists():
        return "no state.db yet\n", "no state.db"
    con = _ro(paths.state_db)
    store = StateStore(connection=con, path=str(paths.state_db))
    try:
        st = store.load_engine_state()
        positions = store.load_positions()
        orders = store.load_orders(live_only=True)
        out = {
            "schema_version": store.schema_version(),
            "kill_switch_latched": st.kill_switch,
            "kill_reason": st.kill_reason,
            "regime": st.regime.regime.value,
            "breakers": {
                name: {"tripped": b.tripped, "reason": b.reason}
                for name, b in sorted(st.breakers.items())
            },
            "positions": {
                s: {"quantity": str(p.quantity), "avg_entry": str(p.avg_entry_price)}
                for s, p in sorted(positions.items())
            },
            "open_orders": [
                {
                    "client_order_id": o.client_order_id,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "status": o.status.value,
                    "amount": str(o.amount),
                    "filled": str(o.filled),
                    "price": str(o.price),
                }
                for o in orders
            ],
            "cash": store.kv_get("cash"),
            "last_cycle_ms": store.kv_get("last_cycle_ms"),
        }
    finally:
        con.close()  # read-only: no checkpoint, unlike StateStore.close()
    note = f"{len(positions)} position(s), {len(orders)} open order(s)"
    return json.dumps(out, indent=2, sort_keys=True, default=str) + "\n", note


def _logs(args: argparse.Namespace) -> tuple[str, str]:
    n = max(int(args.log_lines), 0)
    if args.log_file is not None:
        try:
            with args.log_file.open(encoding="utf-8", errors="replace") as fh:
                tail = deque(fh, maxlen=n)
        except OSError as exc:
            return f"cannot read {args.log_file}: {exc.strerror}\n", "log file unreadable"
        return "".join(tail), f"last {len(tail)} lines of {args.log_file}"
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return (
            "no journalctl on this machine and no --log-file given: no log tail\n",
            "no log source",
        )
    cmd = [journalctl, "-u", args.unit, "-n", str(n), "--no-pager", "-o", "short-iso"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"journalctl failed: {type(exc).__name__}\n", "journalctl failed"
    if done.returncode != 0:
        return f"journalctl -u {args.unit}: {done.stderr.strip()}\n", "journalctl failed"
    lines = done.stdout.count("\n")
    return done.stdout, f"journalctl -u {args.unit}: {lines} lines"


# --------------------------------------------------------------------------- the command


def _guard(bundle: Bundle, name: str, fn: Callable[[], tuple[str, str]]) -> None:
    try:
        text, note = fn()
    except Exception as exc:  # one broken source must not cost the others
        text, note = (
            f"could not gather: {type(exc).__name__}: {exc}\n",
            f"FAILED ({type(exc).__name__})",
        )
    bundle.add(name, text, note)


def gather(loaded: LoadedConfig, args: argparse.Namespace) -> Bundle:
    paths = loaded.paths(replay=getattr(args, "replay", False))
    bundle = Bundle()
    _guard(bundle, "config.json", lambda: (_config(loaded), f"hash {loaded.config_hash}"))
    _guard(bundle, "versions.json", lambda: (_versions(), f"vigil {__version__}"))
    try:
        _daemon(loaded, paths, bundle)
    except Exception as exc:
        bundle.add("health.json", f"could not gather: {type(exc).__name__}\n", "FAILED")
    _guard(bundle, "audit_tail.jsonl", lambda: _audit_tail(paths, args.audit_records))
    _guard(bundle, "integrity.txt", lambda: _integrity(paths))
    _guard(bundle, "state.json", lambda: _state(paths))
    _guard(bundle, "log_tail.txt", lambda: _logs(args))
    return bundle


def _readme(bundle: Bundle, loaded: LoadedConfig) -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f"vigil debug bundle, made {now} by vigil {__version__} on {platform.node()}\n"
        f"config hash {loaded.config_hash}\n"
        "Secrets from the environment (API keys, alert URLs) and URL credentials are "
        "replaced by ***.\n\n" + "\n".join(bundle.notes) + "\n"
    )


def write_archive(out: Path, files: Mapping[str, str]) -> None:
    """The archive, written beside `out` and renamed into place; owner-only permissions."""
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            stamp = int(time.time())
            for name, text in files.items():
                data = text.encode("utf-8")
                info = tarfile.TarInfo(f"vigil-debug/{name}")
                info.size, info.mtime, info.mode = len(data), stamp, 0o600
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def cmd_debug_bundle(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path(f"vigil-debug-{stamp}.tar.gz")
    if out.exists():
        print(f"debug-bundle: {out} exists; choose another --out", file=sys.stderr)
        return exit_codes.CONFIG
    if not out.parent.is_dir():
        print(f"debug-bundle: directory {out.parent} does not exist", file=sys.stderr)
        return exit_codes.CONFIG
    secrets = load_secrets(os.environ)
    extra = secret_values(os.environ, secrets)
    bundle = gather(loaded, args)
    files = {"README.txt": _readme(bundle, loaded), **bundle.files}
    clean = {name: scrub(text, secrets, extra) for name, text in files.items()}
    try:
        write_archive(out, clean)
    except OSError as exc:
        print(f"debug-bundle: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return exit_codes.CONFIG
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    for note in bundle.notes:
        print(f"  {note}")
    return exit_codes.OK
