"""Secrets: read only from the environment, never printed, scrubbed from logs.

The YAML config never holds secrets (infra/config_loader.py refuses keys that look like one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from core.errors import ConfigError
from infra.settings import Mode, VigilConfig

ENV_API_KEY = "VIGIL_API_KEY"
ENV_API_SECRET = "VIGIL_API_SECRET"
ENV_API_PASSWORD = "VIGIL_API_PASSWORD"
ENV_ALERT_URLS = "VIGIL_ALERT_URLS"
ENV_AUDIT_KEY = "VIGIL_AUDIT_KEY"  # HMAC key of the audit chain (docs/audit.md)
ENV_ALERT_URLS_ESCALATE = "VIGIL_ALERT_URLS_ESCALATE"
# Not a secret, but about one: the API key's issue date (YYYY-MM-DD) for the rotation alert.
ENV_API_KEY_ISSUED = "VIGIL_API_KEY_ISSUED"
SECRET_ENV_NAMES = frozenset(
    {
        ENV_API_KEY,
        ENV_API_SECRET,
        ENV_API_PASSWORD,
        ENV_ALERT_URLS,
        ENV_ALERT_URLS_ESCALATE,
        ENV_AUDIT_KEY,
    }
)
MIN_AUDIT_KEY_CHARS = 16

SECRET_KEYS = ("api_key", "apikey", "secret", "password", "passphrase", "token", "private_key")
MASK = "***"
# Pieces of an alert URL (bot tokens, webhook ids) are redacted on their own too, since a log line
# may quote one without the rest; short pieces (hosts like "tgram") would garble every log line.
_MIN_URL_PART = 8


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    api_key: str | None = None
    api_secret: str | None = None
    api_password: str | None = None  # ccxt's "password" (a passphrase on some venues)
    alert_urls: tuple[str, ...] = ()
    audit_key: str | None = None
    url_credentials: tuple[str, ...] = ()  # user:password pieces of exchange.base_url
    escalate_urls: tuple[str, ...] = ()  # VIGIL_ALERT_URLS_ESCALATE: who hears escalations

    def __repr__(self) -> str:
        def state(v: str | None) -> str:
            return "set" if v else "unset"

        return (
            f"Secrets(api_key={state(self.api_key)}, api_secret={state(self.api_secret)}, "
            f"api_password={state(self.api_password)}, alert_urls={len(self.alert_urls)} set, "
            f"audit_key={state(self.audit_key)}, "
            f"escalate_urls={len(self.escalate_urls)} set)"
        )

    __str__ = __repr__

    @property
    def has_credentials(self) -> bool:
        """Key and secret both present (the minimum any venue needs to trade)."""
        return bool(self.api_key and self.api_secret)

    def values(self) -> tuple[str, ...]:
        """Every string that must never be shown, longest first (so a secret containing
        another is masked whole)."""
        found = {v for v in (self.api_key, self.api_secret, self.api_password) if v}
        found.update(v for v in (self.audit_key, *self.url_credentials) if v)
        for url in (*self.alert_urls, *self.escalate_urls):
            found.add(url)
            _, _, rest = url.partition("://")
            found.update(p for p in re.split(r"[/@:?&=#]", rest) if len(p) >= _MIN_URL_PART)
        return tuple(sorted(found, key=lambda s: (-len(s), s)))


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def load_secrets(env: Mapping[str, str]) -> Secrets:
    """Read the secrets from `env` (pass os.environ in production, a dict in tests)."""

    def url_list(name: str) -> tuple[str, ...]:
        return tuple(u for u in re.split(r"[,\s]+", env.get(name, "")) if u)

    return Secrets(
        api_key=_clean(env.get(ENV_API_KEY)),
        api_secret=_clean(env.get(ENV_API_SECRET)),
        api_password=_clean(env.get(ENV_API_PASSWORD)),
        alert_urls=url_list(ENV_ALERT_URLS),
        escalate_urls=url_list(ENV_ALERT_URLS_ESCALATE),
        audit_key=_clean(env.get(ENV_AUDIT_KEY)),
    )


def audit_key(env: Mapping[str, str]) -> bytes | None:
    """The audit chain's HMAC key from VIGIL_AUDIT_KEY; None when unset. Too short a key is
    refused: a MAC is only as strong as its key is hard to guess."""
    value = _clean(env.get(ENV_AUDIT_KEY))
    if value is None:
        return None
    if len(value) < MIN_AUDIT_KEY_CHARS:
        raise ConfigError(
            f"env {ENV_AUDIT_KEY}: too short ({len(value)} characters); fix: use at least "
            f"{MIN_AUDIT_KEY_CHARS} random characters, e.g. the output of `openssl rand -hex 32`"
        )
    return value.encode("utf-8")


def url_credentials(url: str | None) -> tuple[str, ...]:
    """The secret parts of `http://user:pass@host`: the whole user:pass, and each part (also
    percent-decoded) long enough not to garble ordinary log text."""
    if not url:
        return ()
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return ()
    userinfo = netloc.rpartition("@")[0]
    parts = {userinfo, unquote(userinfo)}
    for piece in userinfo.split(":"):
        for text in (piece, unquote(piece)):
            if len(text) >= _MIN_URL_PART // 2:
                parts.add(text)
    return tuple(p for p in parts if p)


def require_live_credentials(config: VigilConfig, secrets: Secrets) -> None:
    """Start-up check: LIVE trades with real keys, so both must be in the environment."""
    if config.mode is not Mode.LIVE:
        return
    missing = [
        name
        for name, value in ((ENV_API_KEY, secrets.api_key), (ENV_API_SECRET, secrets.api_secret))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"env {' and '.join(missing)}: mode LIVE needs exchange credentials; fix: set "
            f"{' and '.join(missing)} in the service environment (never in config files)"
        )


_URL_USERINFO = re.compile(r"://[^/@\s]+@")


def redact(text: str, secrets: Secrets) -> str:
    """`text` with every secret value, and any user:password of a URL, replaced by ***."""
    for value in secrets.values():
        if value in text:
            text = text.replace(value, MASK)
    if "@" in text:
        text = _URL_USERINFO.sub("://" + MASK + "@", text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs secrets from log records: message, arguments and traceback text.

    Attach it to handlers (not loggers): a logger's filters do not see records propagated from
    its children, a handler's filters see every record it emits.
    """

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self._secrets = secrets

    def add(self, values: tuple[str, ...]) -> None:
        """Also scrub `values` (e.g. credentials in exchange.base_url, known once the config
        is loaded)."""
        merged = (*self._secrets.url_credentials, *values)
        self._secrets = replace(self._secrets, url_credentials=merged)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record; show it raw
            message = f"{record.msg} {record.args}"
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # The traceback object still holds the raw text; formatters print exc_text instead.
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


def looks_secret(key: str) -> bool:
    """A config key that names a credential (api_key, exchange_password, bot_token, ...)."""
    k = key.lower().replace("-", "_")
    return any(k == s or k.endswith("_" + s) for s in SECRET_KEYS)


def secret_env_for(key: str) -> str:
    """The environment variable that should carry what `key` tried to hold."""
    k = key.lower()
    if "password" in k or "passphrase" in k:
        return ENV_API_PASSWORD
    if "secret" in k or "private" in k:
        return ENV_API_SECRET
    if "token" in k:
        return f"{ENV_API_KEY} (or {ENV_ALERT_URLS} for alert tokens)"
    return ENV_API_KEY


def scrub_in_logs(values: tuple[str, ...]) -> None:
    """Add `values` to the RedactingFilter of every root handler (see runner/cli.py)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.add(values)
