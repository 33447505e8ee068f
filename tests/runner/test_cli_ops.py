"""Unhappy paths of the incident commands: one plain line, a documented exit code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("VIGIL_ALERT_URLS", "VIGIL_ALERT_URLS_ESCALATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIGIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config"


def test_flatten_refuses_bad_timings_before_anything_is_sent(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["flatten", "--config", str(config), "--passive-seconds", "-1"])
    assert rc == 2
    assert "passive_seconds must be within 0..3600" in capsys.readouterr().err
    assert not (config.parent / "data" / "FLATTEN").exists()


def test_alert_test_without_routes_says_which_variable(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alert", "test", "--config", str(config)]) == 1
    assert "set VIGIL_ALERT_URLS" in capsys.readouterr().out


def test_alert_test_names_a_refused_url_by_scheme_only(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_ALERT_URLS", "nosuchscheme://s3cretT0ken12345@host")
    assert main(["alert", "test", "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert "primary #1 nosuchscheme://: FAILED (apprise does not accept this URL)" in out.out
    assert "s3cretT0ken12345" not in out.out + out.err


def test_debug_bundle_refuses_to_overwrite_or_write_nowhere(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b.tar.gz"
    out.write_text("keep me")
    assert main(["debug-bundle", "--config", str(config), "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    missing = tmp_path / "no" / "dir" / "b.tar.gz"
    assert main(["debug-bundle", "--config", str(config), "--out", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "exists; choose another --out" in err and "does not exist" in err


def test_drill_run_without_a_known_name_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", "run", "--config", str(config)]) == 2
    assert main(["drill", "run", "nope", "--config", str(config)]) == 2
    assert "unknown drill nope" in capsys.readouterr().out
