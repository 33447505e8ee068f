"""The names `vigil sweep` accepts, in a module that imports only `typing`: the CLI builds its
parser from them on every `vigil` start, and must not load optuna or the backtest for that."""

from typing import Literal

# Summary keys a sweep can optimise, and which way is better. Names are the report's own
# (docs/backtesting.md defines each); max_drawdown_pct is a positive percentage, so lower wins.
METRICS: dict[str, Literal["minimize", "maximize"]] = {
    "total_pnl_pct": "maximize",
    "sharpe": "maximize",
    "sortino": "maximize",
    "profit_factor": "maximize",
    "win_rate_pct": "maximize",
    "avg_trade_pct": "maximize",
    "max_drawdown_pct": "minimize",
}
SAMPLERS = ("tpe", "random", "grid")
