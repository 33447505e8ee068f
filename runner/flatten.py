"""Getting flat: reduce-only exits of the named or all positions, on operator request.

The daemon's only command channel is the data directory, as for the kill switch: `vigil
flatten` writes `<data_dir>/FLATTEN` (JSON: id, symbols, reason, timings); the daemon picks it up
between cycles (`FlattenPacer`), so no cycle runs while it flattens and nothing in the cycle
(stale-order cancels, the kill switch's cancel-all) can take its orders down. For each symbol:

0. resting orders are cancelled: every live order when flattening everything, else the
   symbol's (an exit holds the coins, an entry would buy more);
1. a post-only limit sell at the touch (the best ask) for everything held, up to
   `passive_seconds`;
2. whatever is left: a marketable limit sell at the best bid minus `slippage_bps`, up to
   `marketable_seconds`;
3. each order that has not filled by then is cancelled.

Every step is an audit record (`flatten_request`, `flatten_step`, `flatten_result`, plus the
orders' own intent/ack/fill/cancel records). Fills are booked by the engine's reconciler, as in
a cycle. The outcome per symbol (flat, dust below the venue minimum, left with the reason) goes
to `<data_dir>/FLATTEN.result`, which the command waits for. Flatten orders pass the kill switch:
they can only reduce a position (`Executor.submit(..., past_kill=True)` needs reduce_only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from core.errors import ExchangeError
from core.models import CancelRequest, Market, OrderIntent, OrderType, Side
from core.orders import client_order_id
from core.sizing import ceil_to, floor_to

log = logging.getLogger("vigil.flatten")

REQUEST_FILE = "FLATTEN"
RESULT_FILE = "FLATTEN.result"
STRATEGY = "flatten"
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class FlattenRequest:
    id: str
    symbols: tuple[str, ...] = ()  # empty: every position
    reason: str = "operator flatten"
    passive_seconds: float = 10.0
    marketable_seconds: float = 10.0
    slippage_bps: float = 50.0
    keep: tuple[tuple[str, str], ...] = ()  # (symbol, quantity to keep): a trim, not a flatten

    def kept(self, symbol: str) -> Decimal:
        return next((Decimal(q) for s, q in self.keep if s == symbol), Decimal(0))

    @staticmethod
    def new(symbols: tuple[str, ...], reason: str, **fields: Any) -> FlattenRequest:
        return FlattenRequest(secrets.token_hex(6), symbols, reason, **fields)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "symbols": list(self.symbols), "keep": dict(self.keep)})

    @staticmethod
    def parse(text: str) -> FlattenRequest:
        """Raises ValueError naming what is wrong."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ValueError("a flatten request is a JSON object with a non-empty id")
        symbols = raw.get("symbols") or []
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValueError("symbols must be a list of strings")
        req = FlattenRequest(
            id=raw["id"][:64],
            symbols=tuple(symbols),
            reason=str(raw.get("reason") or "operator flatten")[:500],
            passive_seconds=float(raw.get("passive_seconds", 10.0)),
            marketable_seconds=float(raw.get("marketable_seconds", 10.0)),
            slippage_bps=float(raw.get("slippage_bps", 50.0)),
            keep=_keep(raw.get("keep") or {}),
        )
        for name in ("passive_seconds", "marketable_seconds"):
            if not 0 <= getattr(req, name) <= 3600:
                raise ValueError(f"{name} must be within 0..3600")
        if not 0 < req.slippage_bps <= 2000:
            raise ValueError("slippage_bps must be within (0, 2000]")
        return req


def _keep(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise ValueError("keep must map symbols to quantities")
    out = []
    for sym, qty in raw.items():
        try:
            q = Decimal(str(qty))
        except ArithmeticError:
            raise ValueError(f"keep {sym}: {qty!r} is not a quantity") from None
        if not q.is_finite() or q < 0:
            raise ValueError(f"keep {sym}: must be a quantity >= 0")
        out.append((str(sym), str(q)))
    return tuple(sorted(out))


@dataclass(slots=True)
class SymbolOutcome:
    symbol: str
    status: str  # flat, trimmed, dust, left, no_position, unknown
    start: str = "0"
    left: str = "0"
    detail: str = ""
    orders: list[str] = field(default_factory=list)

    def line(self) -> str:
        head = f"{self.symbol}: {self.status}"
        if self.status in ("flat", "trimmed", "dust", "left"):
            head += f" (held {self.start}, left {self.left})"
        return head + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True, slots=True)
class FlattenResult:
    id: str
    outcomes: tuple[SymbolOutcome, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """Nothing tradeable left: every symbol flat, dust or not held."""
        return all(o.status in ("flat", "trimmed", "dust", "no_position") for o in self.outcomes)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "ok": self.ok,
                "seconds": round(self.seconds, 3),
                "outcomes": [asdict(o) for o in self.outcomes],
            },
            indent=2,
        )

    @staticmethod
    def parse(text: str) -> FlattenResult:
        raw = json.loads(text)
        outcomes = tuple(SymbolOutcome(**o) for o in raw["outcomes"])
        return FlattenResult(str(raw["id"]), outcomes, float(raw["seconds"]))


class FlattenEngine(Protocol):
    """What the flattener uses of runner.engine.Engine."""

    @property
    def markets(self) -> Mapping[str, Market]: ...

    @property
    def portfolio(self) -> Any: ...

    @property
    def book(self) -> Any: ...

    @property
    def exchange(self) -> Any: ...

    @property
    def executor(self) -> Any: ...

    @property
    def recorder(self) -> Any: ...

    async def poll_market(self, now_ms: int) -> None: ...

    async def reconcile(self, now_ms: int) -> None: ...

    async def cancel_all(self, now_ms: int, *, reason: str) -> int: ...


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Flattener:
    def __init__(self, *, engine: FlattenEngine, now_ms: Callable[[], int], data_dir: Path) -> None:
        self._e = engine
        self._now = now_ms
        self._request = data_dir / REQUEST_FILE
        self._result = data_dir / RESULT_FILE

    def pending(self) -> FlattenRequest | None:
        """The waiting request, taken off the file (a bad one is refused in the result file)."""
        try:
            text = self._request.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            return None
        with contextlib.suppress(FileNotFoundError):
            self._request.unlink()
        try:
            return FlattenRequest.parse(text)
        except (ValueError, TypeError) as exc:
            log.error("flatten request refused: %s", exc)
            write_atomic(self._result, json.dumps({"id": "", "error": str(exc)}))
            return None

    async def execute(self, req: FlattenRequest) -> FlattenResult:
        t0 = time.monotonic()
        rec = self._e.recorder
        rec.event(
            "flatten_request",
            {"id": req.id, "symbols": list(req.symbols), "reason": req.reason},
            sync=True,
        )
        if not req.symbols and self._e.book.live():
            # Everything: resting entries anywhere could fill while we sell (in PAPER the
            # candles polled below fill them), so every live order goes first.
            await self._e.cancel_all(self._now(), reason="FLATTEN")
        await self._reconcile()
        targets = req.symbols or tuple(sorted(self._e.portfolio.positions))
        outcomes = []
        for symbol in targets:
            try:
                outcomes.append(await self._flatten(symbol, req))
            except ExchangeError as exc:
                held = self._held(symbol)
                outcomes.append(
                    SymbolOutcome(symbol, "left", str(held), str(held), f"exchange error: {exc}")
                )
        result = FlattenResult(req.id, tuple(outcomes), time.monotonic() - t0)
        rec.event(
            "flatten_result",
            {"id": req.id, "ok": result.ok, "outcomes": [o.line() for o in outcomes]},
            sync=True,
        )
        write_atomic(self._result, result.to_json())
        for o in outcomes:
            log.warning("flatten %s: %s", req.id, o.line())
        return result

    # ------------------------------------------------------------------ one symbol

    def _held(self, symbol: str) -> Decimal:
        pos = self._e.portfolio.positions.get(symbol)
        return pos.quantity if pos is not None else Decimal(0)

    async def _reconcile(self) -> None:
        await self._e.reconcile(self._now())

    async def _flatten(self, symbol: str, req: FlattenRequest) -> SymbolOutcome:
        market = self._e.markets.get(symbol)
        if market is None:
            return SymbolOutcome(symbol, "unknown", detail="not a market on this exchange")
        start = self._held(symbol)
        keep = req.kept(symbol)
        if start <= 0:
            return SymbolOutcome(symbol, "no_position")
        if start <= keep:
            return SymbolOutcome(symbol, "trimmed", str(start), str(start), "already within")
        out = SymbolOutcome(symbol, "left", str(start), str(start))
        # Resting orders on the symbol go first: an exit holds the coins the flatten must sell,
        # an entry would buy more.
        resting = [o for o in self._e.book.live() if o.symbol == symbol]
        for o in resting:
            await self._e.executor.cancel(
                CancelRequest(o.client_order_id, symbol, "FLATTEN"), self._now()
            )
        if resting:
            await self._reconcile()
        steps = (
            ("passive", req.passive_seconds),
            ("marketable", req.marketable_seconds),
        )
        for n, (step, wait_s) in enumerate(steps):
            held = self._held(symbol)
            if held <= keep:
                break
            if step == "passive" and wait_s <= 0:
                continue  # --passive-seconds 0: straight to the marketable sell
            outcome = await self._step(symbol, market, held - keep, step, n, wait_s, req, out)
            if outcome is not None:  # dust, or nothing we may sell: stop here
                out.status, out.detail = "dust" if outcome.startswith("dust") else "left", outcome
                break
        left = self._held(symbol)
        out.left = str(left)
        if left <= 0:
            out.status, out.detail = "flat", ""
        elif keep > 0 and left <= keep:
            out.status, out.detail = "trimmed", f"kept {keep}"
        elif out.status == "left" and not out.detail:
            out.detail = "orders did not fill in time; run again or widen --slippage-bps"
        return out

    async def _step(
        self,
        symbol: str,
        market: Market,
        held: Decimal,  # what to sell: the holding above what is kept
        step: str,
        n: int,
        wait_s: float,
        req: FlattenRequest,
        out: SymbolOutcome,
    ) -> str | None:
        """Place and work one order; a reason to stop when nothing may be sold."""
        e = self._e
        balances = await e.exchange.fetch_balances()
        bal = balances.get(market.base)
        free = bal.free if bal is not None else Decimal(0)
        amount = floor_to(min(held, free), market.amount_increment)
        quote = (await e.exchange.fetch_quotes([symbol])).get(symbol)
        if quote is None or quote.bid <= 0:
            return "no quote to price the exit"
        if step == "passive":
            price, post_only = ceil_to(quote.ask, market.price_increment), True
        else:
            floor_px = quote.bid * (1 - Decimal(str(req.slippage_bps)) / _BPS)
            price, post_only = floor_to(floor_px, market.price_increment), False
        if amount <= 0 or amount < market.min_size or amount * price < market.min_notional:
            return (
                f"dust: {held} below the venue minimum (min size {market.min_size}, "
                f"min notional {market.min_notional} at {price})"
                if free >= held
                else f"only {free} of {held} is free on the exchange"
            )
        now = self._now()
        coid = client_order_id(STRATEGY, symbol, Side.SELL, amount, now * 10 + n)
        intent = OrderIntent(
            client_order_id=coid,
            symbol=symbol,
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            amount=amount,
            price=price,
            strategy=STRATEGY,
            cycle_ms=now,
            post_only=post_only,
            reduce_only=True,
            reason=f"flatten {req.id}: {req.reason}"[:200],
        )
        e.recorder.event(
            "flatten_step",
            {
                "id": req.id,
                "symbol": symbol,
                "step": step,
                "client_order_id": coid,
                "amount": str(amount),
                "price": str(price),
                "bid": str(quote.bid),
                "ask": str(quote.ask),
            },
        )
        out.orders.append(coid)
        order = await e.executor.submit(intent, now, past_kill=True)
        if order.status.is_live:
            await self._work(order.client_order_id, symbol, wait_s)
        return None

    async def _work(self, coid: str, symbol: str, wait_s: float) -> None:
        """Wait for the order to end, booking fills as they come; cancel it at the deadline."""
        deadline = time.monotonic() + wait_s
        while True:
            await self._e.poll_market(self._now())  # PAPER: the sim fills on new candles
            await self._reconcile()
            order = self._e.book.orders.get(coid)
            if order is None or not order.status.is_live:
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        await self._e.executor.cancel(CancelRequest(coid, symbol, "FLATTEN_TIMEOUT"), self._now())
        await self._reconcile()


class Pacer(Protocol):
    async def next_cycle(self, stop: asyncio.Event) -> int | None: ...


class FlattenPacer:
    """Wraps the loop's pacer: a flatten request is served between cycles, as soon as it
    appears (polled every `poll_s`). `once`: serve what is waiting, then end the run
    (the standalone `vigil flatten` when no daemon runs). `trim`, when given, is asked after
    every cycle for an auto-trim to run first."""

    def __init__(
        self,
        inner: Pacer,
        flattener: Flattener,
        *,
        once: bool = False,
        poll_s: float = 0.2,
        trim: Callable[[], FlattenRequest | None] | None = None,
    ) -> None:
        self._inner = inner
        self._flattener = flattener
        self._once = once
        self._trim = trim  # checked once after every cycle
        self._poll_s = poll_s
        self._checked = 0.0  # monotonic time of the last look for a request

    async def _serve(self) -> bool:
        req = self._flattener.pending()
        if req is None:
            return False
        try:
            await self._flattener.execute(req)
        except Exception:  # the daemon must outlive a failed flatten; the CLI times out
            log.exception("flatten %s failed", req.id)
        return True

    async def next_cycle(self, stop: asyncio.Event) -> int | None:
        if self._once:
            await self._serve()
            return None
        if self._trim is not None:
            req = self._trim()
            if req is not None:
                try:
                    await self._flattener.execute(req)
                except Exception:
                    log.exception("auto-trim %s failed", req.id)
        nxt: asyncio.Future[int | None] = asyncio.ensure_future(self._inner.next_cycle(stop))
        try:
            while True:
                if time.monotonic() - self._checked >= self._poll_s:
                    self._checked = time.monotonic()
                    if await self._serve():
                        continue
                if nxt.done():
                    return nxt.result()
                await asyncio.wait({nxt}, timeout=self._poll_s)
        finally:
            if not nxt.done():
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await nxt


async def wait_for_result(
    data_dir: Path, request_id: str, timeout_s: float, alive: Callable[[], bool]
) -> FlattenResult | str:
    """The daemon's result for `request_id`, or why there is none."""
    path = data_dir / RESULT_FILE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("error") and not raw.get("id"):
                return f"the daemon refused the request: {raw['error']}"
            if raw.get("id") == request_id:
                return FlattenResult.parse(path.read_text(encoding="utf-8"))
        if not alive():
            return "the daemon stopped before it answered"
        await asyncio.sleep(0.2)
    return f"no answer from the daemon within {timeout_s:g} s"
