"""Settings of the reconcile stage (what to do with what the venue holds and vigil does not)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.config_base import Frozen

UnknownHoldings = Literal["halt_entries", "adopt", "ignore"]


class ReconcileConfig(Frozen):
    unknown_holdings: UnknownHoldings = Field(
        default="halt_entries",
        description="Coins on the venue that the state does not know (a lost state.db, coins "
        "bought by hand), seen in two reconciles in a row and worth more than dust: "
        "'halt_entries' blocks new entries (exits go on) until they are sold or adopted; "
        "'adopt' makes them a position (strategy 'adopted', cost basis from the venue's "
        "recent buy fills, else the mark), audited; 'ignore' leaves them alone. All three "
        "list them on /health and in `vigil status`.",
    )
