"""`record` (core/records.py): value semantics at run time, immutability by the type checker."""

from __future__ import annotations

import dataclasses
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from mypy import api as mypy_api

from tickpipe.core.records import record
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, Trade


def _trade(trade_id: str = "1") -> Trade:
    return Trade(
        "binance", "BTCUSDT", trade_id, Decimal("1.5"), Decimal("2"), Side.BUY, 2_000_000, 2_000_001
    )


def test_records_are_equal_and_hash_by_value() -> None:
    assert _trade() == _trade()
    assert hash(_trade()) == hash(_trade())
    assert len({_trade(), _trade(), _trade("2")}) == 2
    scored = ScoredTrade(_trade(), Decimal("1.5"), Signal.HOLD)
    assert {scored: 1}[ScoredTrade(_trade(), Decimal("1.5"), Signal.HOLD)] == 1


def test_records_keep_slots_and_dataclass_helpers() -> None:
    trade = _trade()
    assert not hasattr(trade, "__dict__")
    later = dataclasses.replace(trade, trade_id="2")
    assert later.trade_id == "2"
    assert trade.trade_id == "1"


def test_keyword_and_positional_construction_agree() -> None:
    @record
    class Pair:
        left: int
        right: int = 0

    assert Pair(1, 2) == Pair(left=1, right=2)
    assert Pair(1).right == 0


@pytest.mark.parametrize(
    "statement",
    ["trade.price = Decimal(2)", "scored.sma = None"],
)
def test_assigning_a_field_is_a_type_error(tmp_path: Path, statement: str) -> None:
    """Nothing stops it at run time (that is what makes a record cheap); mypy, run strict on the
    core in CI, does."""
    module = tmp_path / "mutates.py"
    module.write_text(
        textwrap.dedent(
            f"""
            from decimal import Decimal
            from tickpipe.core.scoring import ScoredTrade
            from tickpipe.core.trade import Trade

            def mutate(trade: Trade, scored: ScoredTrade) -> None:
                {statement}
            """
        )
    )
    options = ["--strict", "--no-incremental", "--python-version", "3.11"]
    out, _, status = mypy_api.run([*options, "--cache-dir", str(tmp_path / "cache"), str(module)])
    assert status == 1, out
    assert "read-only" in out or "frozen" in out, out
