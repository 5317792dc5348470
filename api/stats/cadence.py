"""GET /stats/cadence: the active policy's tiers and cadences."""

from __future__ import annotations

from litestar import Controller, get

from api.schemas import UNAVAILABLE, ResponseModel
from api.state import Resources
from api.stats.queries import active_symbols_per_tier
from market_data.policy import LoadedPolicy


class TierCadence(ResponseModel, kw_only=True):
    intervals: list[str]
    bar_cadence: str
    bar_cadence_seconds: float
    quotes: bool
    quote_cadence: str | None
    lookback: str
    revision_window: str
    """Recent bars each run reads again to store vendors' corrections ("0s": none)."""
    batch_size: int
    providers: list[str]
    active_symbols: int


class CadenceReport(ResponseModel, kw_only=True):
    policy_version: int
    job_source: str
    backfill_cadence: str
    tiers: dict[str, TierCadence]


def cadence_report(loaded: LoadedPolicy, active_symbols: dict[str, int]) -> CadenceReport:
    """The tiers and cadences of `loaded`, with each tier's count of active symbols."""
    p = loaded.policy
    tiers = {
        tier.value: TierCadence(
            intervals=[iv.value for iv in tp.intervals],
            bar_cadence=tp.bar_cadence.text,
            bar_cadence_seconds=tp.bar_cadence.seconds,
            quotes=tp.quotes,
            quote_cadence=(tp.quote_cadence or tp.bar_cadence).text if tp.quotes else None,
            lookback=tp.lookback.text,
            revision_window=tp.revision_window.text,
            batch_size=tp.batch_size,
            providers=tp.providers,
            active_symbols=active_symbols.get(tier.value, 0),
        )
        for tier, tp in p.tiers.items()
    }
    return CadenceReport(
        policy_version=loaded.version,
        job_source=p.jobs.mode,
        backfill_cadence=p.backfill.cadence.text,
        tiers=tiers,
    )


class CadenceController(Controller):
    tags = ["stats"]

    @get(
        "/stats/cadence",
        operation_id="getCadence",
        summary="Tiers and cadences of the active policy",
        responses={503: UNAVAILABLE},
    )
    async def cadence(self, resources: Resources) -> CadenceReport:
        loaded = await resources.policy.get(resources.db)
        return cadence_report(loaded, await resources.reads.run(active_symbols_per_tier))
