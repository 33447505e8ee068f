"""Builds the ccxt client the adapter drives. All venue-specific knobs live here."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def rebase_urls(urls: Any, base: str) -> Any:
    """Point every REST URL at `base`, keeping each URL's path (tests: the fake exchange)."""
    if isinstance(urls, dict):
        return {k: rebase_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, str):
        return base + urlsplit(urls).path
    return urls


def make_ccxt(
    exchange_id: str,
    *,
    api_key: str | None = None,
    api_secret: str | None = None,
    api_password: str | None = None,
    sandbox: bool = False,
    base_url: str | None = None,
    timeout_ms: int = 10_000,
    pro: bool = False,
) -> Any:
    """A ccxt.async_support client for spot trading.

    ccxt's own throttle is off: our RateLimiter budgets requests per endpoint weight and
    honours Retry-After, which ccxt's does not.
    """
    if pro:  # ccxt.pro: the same REST methods plus watch_* over the venue's WebSocket
        import ccxt.pro as ccxt_async
    else:
        import ccxt.async_support as ccxt_async  # heavy; only the daemon's live modes need it

    if exchange_id not in ccxt_async.exchanges:
        raise ValueError(
            f"unknown exchange {exchange_id!r}: use a ccxt id such as binance, coinbase or mexc"
        )
    config: dict[str, Any] = {
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {"defaultType": "spot"},
    }
    if api_key:
        config["apiKey"] = api_key
    if api_secret:
        config["secret"] = api_secret
    if api_password:
        config["password"] = api_password
    ex = getattr(ccxt_async, exchange_id)(config)
    opts = ex.options
    fetch_markets = opts.get("fetchMarkets")
    # Spot only: margin, futures and options markets are requests (and weight) for nothing.
    if isinstance(fetch_markets, dict) and "types" in fetch_markets:
        opts["fetchMarkets"] = {**fetch_markets, "types": ["spot"]}
    elif isinstance(fetch_markets, list):
        opts["fetchMarkets"] = ["spot"]
    opts["fetchMargins"] = False
    # Currencies need private endpoints on some venues and vigil does not use them.
    opts["fetchCurrencies"] = False
    open_orders = opts.get("fetchOpenOrders")
    opts["fetchOpenOrders"] = {
        **(open_orders if isinstance(open_orders, dict) else {}),
        "warnWithoutSymbol": False,
    }
    opts["warnOnFetchOpenOrdersWithoutSymbol"] = False
    if sandbox:
        ex.set_sandbox_mode(True)
    if base_url is not None:
        base = base_url.rstrip("/")
        ex.urls["api"] = rebase_urls(ex.urls["api"], base)
        if pro and isinstance(ex.urls["api"].get("ws"), dict):
            # the streams too: ws:// on the same host (the fake exchange serves both)
            ws_base = "ws" + base[4:] if base.startswith("http") else base
            ex.urls["api"]["ws"] = rebase_urls(ex.urls["api"]["ws"], ws_base)
    return ex
