"""The 5-minute soak (`./dev soak --minutes 5`): the whole stack under load and every fault, then
checked (tests/soak/run.py). The 60-minute one is `./dev soak`, not part of the suite."""

from __future__ import annotations

import pytest

from tests.soak import run


@pytest.mark.timeout(2400)
def test_five_minutes_of_load_and_faults_lose_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = run.main(["--minutes", "5", "--drain-minutes", "10"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
