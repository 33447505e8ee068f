"""Exit rules, evaluated first every cycle. Exits only ever reduce risk."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.config import ExitConfig
from core.models import Market, Position, ProposalKind, Side, TradeProposal
from core.reasons import ExitReason
from core.sizing import is_dust

EXITS = "exits"  # the strategy name exit-rule proposals carry

_HUNDRED = Decimal(100)
_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ExitDecision:
    symbol: str
    reason: ExitReason
    detail: str


def evaluate_exit(
    pos: Position, mark: Decimal, now_ms: int, rules: ExitConfig
) -> ExitDecision | None:
    """The first exit rule `pos` breaks at `mark`, in order of severity, or None."""
    entry = pos.avg_entry_price
    if pos.quantity <= _ZERO or entry <= _ZERO:
        return None
    # Decimal constants, not ints: mixed int/Decimal arithmetic converts the int every time,
    # and this runs for every held position every cycle.
    pnl_pct = (mark / entry - _ONE) * _HUNDRED
    if pnl_pct <= rules.stop_loss_pct:
        return ExitDecision(pos.symbol, ExitReason.STOP_LOSS, f"pnl {pnl_pct:.2f}%")
    trailing = rules.trailing_stop_pct
    if trailing is not None:
        peak = pos.peak_price if pos.peak_price >= mark else mark
        if (peak / entry - _ONE) * _HUNDRED >= rules.trailing_activation_pct:
            off_peak_pct = (mark / peak - _ONE) * _HUNDRED
            if off_peak_pct <= -trailing:
                return ExitDecision(
                    pos.symbol, ExitReason.TRAILING_STOP, f"{off_peak_pct:.2f}% off peak {peak}"
                )
    if rules.take_profit_pct is not None and pnl_pct >= rules.take_profit_pct:
        return ExitDecision(pos.symbol, ExitReason.TAKE_PROFIT, f"pnl {pnl_pct:.2f}%")
    if rules.max_holding_minutes is not None:
        held_ms = now_ms - pos.opened_ms
        if held_ms >= rules.max_holding_minutes * 60_000:
            return ExitDecision(pos.symbol, ExitReason.MAX_HOLD, f"held {held_ms // 60_000} min")
    return None


def exit_proposal(
    pos: Position, mark: Decimal, now_ms: int, rules: ExitConfig, market: Market | None
) -> TradeProposal | None:
    """The reduce-only sell an exit rule asks for at `mark`, or None. A dust holding is left
    alone: unsellable until it grows or the price returns, and risk lets it top up. The cycle
    and the fast exits between cycles both ask this."""
    ex = evaluate_exit(pos, mark, now_ms, rules)
    if ex is None or (market is not None and is_dust(pos.quantity, mark, market)):
        return None
    return TradeProposal(
        strategy=EXITS,
        symbol=pos.symbol,
        side=Side.SELL,
        kind=ProposalKind.EXIT,
        confidence=1.0,
        reason=ex.reason.value,
        ref_price=mark,
        quantity=pos.quantity,
        reduce_only=True,
    )
