"""The Grafana dashboard and the Prometheus rules name only metrics the daemon exports: every
metric in a panel or rule expression is checked against /metrics of a real daemon (a short
replay). The rules pass `promtool check rules` where promtool is installed."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ROOT, Workspace, wait_for

DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
# Series that come from Prometheus itself, not from the daemon.
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b(vigil_[a-zA-Z0-9_]+|up)\b")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_exprs() -> dict[str, list[str]]:
    return {p.name: list(_exprs(json.loads(p.read_text()))) for p in DASHBOARDS}


def rule_exprs() -> list[str]:
    return list(_exprs(yaml.safe_load(RULES.read_text())))


def names_in(expr: str) -> set[str]:
    # label values in quotes may look like names; drop quoted strings first
    return set(_NAME.findall(re.sub(r'"[^"]*"', '""', expr)))


def exported(text: str) -> set[str]:
    """Every series name /metrics can produce, from the families it declares."""
    out = set()
    for fam in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(fam.type, ("",)):
            out.add(fam.name + suffix)
        out.update(s.name for s in fam.samples)
    return out


@pytest.fixture(scope="module")
def daemon_metrics(tmp_path_factory: pytest.TempPathFactory, candle_dir: Path) -> set[str]:
    import os

    root = tmp_path_factory.mktemp("dash")
    config = root / "config"
    shutil.copytree(ROOT / "config", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "VIGIL_PATHS__DATA_DIR": str(root / "data"),
            "VIGIL_HTTP__PORT": "0",
            "VIGIL_MODE": "PAPER",
            "VIGIL_UNIVERSE__SYMBOLS": '["BTC/USDT", "ETH/USDT", "SOL/USDT"]',
        }
    )
    ws = Workspace(
        root=ROOT, config=config, data=root / "data" / "replay", candles=candle_dir, env=env
    )
    proc = ws.start("run", "--replay", str(candle_dir), "--speed", "300")
    port_file = ws.data / "health" / "http_port"
    try:
        assert wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 60)
        assert wait_for(lambda: ws.audit_dir.exists() and _has_cycle(ws), 60)
        port = int(port_file.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    return exported(text)


def _has_cycle(ws: Workspace) -> bool:
    try:
        return any(r["kind"] == "cycle" for r in ws.records())
    except (json.JSONDecodeError, FileNotFoundError):
        return False


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    assert DASHBOARDS, "no Grafana dashboard in deploy/grafana"
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        assert all(p["targets"] for p in dash["panels"]), f"{path.name}: a panel has no query"
    text = " ".join(e for exprs in dashboard_exprs().values() for e in exprs)
    for metric in (
        "vigil_cycle_seconds_bucket",
        "vigil_exposure",
        "vigil_positions",
        "vigil_equity",
        "vigil_no_trade_total",
        "vigil_breaker_tripped",
        "vigil_api_errors_total",
        "vigil_alerts_total",
        "vigil_alert_delivery_failures_total",
    ):
        assert metric in text, f"no panel shows {metric}"


def test_every_metric_in_panels_and_rules_is_exported(daemon_metrics: set[str]) -> None:
    missing = []
    sources = {**dashboard_exprs(), RULES.name: rule_exprs()}
    assert all(sources.values())
    for source, exprs in sources.items():
        for expr in exprs:
            for name in names_in(expr) - PROMETHEUS_OWN:
                if name not in daemon_metrics:
                    missing.append(f"{source}: {name} in {expr!r}")
    assert not missing, "\n".join(missing)


def test_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
