from __future__ import annotations

import json
import logging

import pytest

from infra.logfmt import CYCLE, JsonFormatter, formatter
from infra.secrets import RedactingFilter, Secrets


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("vigil.exec", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_line_has_the_fixed_fields_and_known_context() -> None:
    token = CYCLE.set(1_704_067_200_000)
    try:
        line = JsonFormatter().format(
            record("order %s refused", "c1", symbol="BTC/USDT", client_order_id="c1")
        )
    finally:
        CYCLE.reset(token)
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "vigil.exec"
    assert out["msg"] == "order c1 refused"
    assert out["cycle"] == 1_704_067_200_000
    assert out["symbol"] == "BTC/USDT" and out["client_order_id"] == "c1"
    assert out["ts"].endswith("+00:00") and "\n" not in line


def test_json_line_without_context_omits_it_and_carries_tracebacks_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, True)
        import sys

        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert "cycle" not in out and "symbol" not in out
    assert "ValueError: boom" in out["exc"] and "\n" not in line


def test_secrets_are_scrubbed_before_the_json_formatter_sees_them() -> None:
    rec = record("key is %s", "sekret-key-123456")
    RedactingFilter(Secrets(api_key="sekret-key-123456")).filter(rec)
    assert json.loads(JsonFormatter().format(rec))["msg"] == "key is ***"


def test_formats_by_name() -> None:
    assert isinstance(formatter("json"), JsonFormatter)
    assert not isinstance(formatter("text"), JsonFormatter)
    with pytest.raises(ValueError, match="text, json"):
        formatter("xml")
