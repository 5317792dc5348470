"""The universe seed: crypto pairs are BASE-QUOTE tickers on the 24/7 exchange code, and only they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from market_data.calendar import CRYPTO_MIC
from market_data.records import Tier, is_valid_symbol
from market_data.universe import UniverseError, generated_entries, load_seed

ROOT = Path(__file__).resolve().parents[2]
HEADER = "symbol,exchange_mic,tier,asset_class,currency,name\n"


def test_the_seed_has_the_crypto_pairs_in_t0_on_the_24_7_calendar() -> None:
    pairs = [e for e in load_seed(ROOT / "include" / "universe.csv") if e.asset_class == "crypto"]
    assert {e.symbol for e in pairs} >= {"BTC-USD", "ETH-USD", "SOL-USD"} and len(pairs) == 8
    assert {(e.exchange_mic, e.tier, e.currency) for e in pairs} == {(CRYPTO_MIC, Tier.T0, "USD")}
    assert all(is_valid_symbol(e.symbol) and e.symbol.endswith("-USD") for e in pairs)


@pytest.mark.parametrize(
    "row",
    ["BTC-USD,XNYS,T0,crypto,USD,Bitcoin", "AAPL,C247,T0,equity,USD,Apple on a 24/7 venue"],
    ids=["a pair on an equity exchange", "an equity on the 24/7 code"],
)
def test_a_row_whose_asset_class_and_exchange_disagree_is_refused(tmp_path: Path, row: str) -> None:
    seed = tmp_path / "universe.csv"
    seed.write_text(HEADER + row + "\n")
    with pytest.raises(UniverseError, match=r"universe\.csv:2: asset_class"):
        load_seed(seed)


def test_generated_symbols_on_the_24_7_code_are_crypto() -> None:
    (entry,) = generated_entries(1, Tier.T0, CRYPTO_MIC)
    assert (entry.exchange_mic, entry.asset_class) == (CRYPTO_MIC, "crypto")
    assert generated_entries(1, Tier.T0)[0].asset_class == "equity"
