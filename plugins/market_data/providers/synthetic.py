"""The synthetic provider: deterministic, offline market data with injectable faults.

The same (symbol, interval, ts) gives the same bar in every process and on every
machine: prices are a function of the symbol's hash and the minute, not of any state.
Longer intervals are aggregated from the 1m bars they contain, so a 5m bar agrees with
its five 1m bars. Bars exist only inside the exchange's sessions and only once complete.
Crypto pairs (the 24/7 calendar, `calendar.CRYPTO_MIC`) trade fractions of a coin: their
volumes and quote sizes are fractional.

Prices are those of the real raw series at a split (`synthetic_history`): AAPL's bars before
2020-08-31 are four times higher, with a quarter of the volume. The provider also serves the
corporate actions of that history (`fetch_corporate_actions`).

Faults (latency, 5xx, 429, outage windows, late and never-existing bars) come from the
provider's `SyntheticFaults` in the policy, overridable by MD_SYNTHETIC_* environment
variables, so a test or an operator can break it on purpose. So do corrections: a share
(`revision_rate`) of 1m bars, picked per (symbol, minute), is served as first delivered until
`revision_delay` after it ends and revised after (late trades: more volume, the close moved by
up to `revision_size`), like vendors that re-send a minute bar when late trades arrive; the
longer bars that hold a corrected minute change with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

import msgspec
import numpy as np

from market_data import calendar
from market_data.corporate_actions import CorporateAction
from market_data.policy.schema import ProviderPolicy, SyntheticFaults, dec_hook, enc_hook
from market_data.providers.base import BarRequest, Capabilities, ProviderSpec
from market_data.providers.credentials import Credentials
from market_data.providers.errors import RateLimitedError, RequestError, ServerError
from market_data.providers.synthetic_history import split_multiplier, synthetic_actions
from market_data.records import Bar, Interval, Quote, utcnow

DEFAULT_CALLS_PER_MINUTE = 6000
_NS_PER_MIN = 60_000_000_000
_COIN_UNITS = 1e-4
"""A crypto pair's volume is its share-like count times this (0.01 to about 14 coins a minute)."""
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_SALT = {
    name: np.uint64(i * 0x1000193 + 0x51ED27)
    for i, name in enumerate(("o", "c", "h", "l", "v", "drop", "notrade", "q", "qs", "rev", "revc", "revv"))
}


def symbol_seed(symbol: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "big"))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each element."""
    with np.errstate(over="ignore"):
        x = x + _M1
        x = (x ^ (x >> np.uint64(30))) * _M2
        x = (x ^ (x >> np.uint64(27))) * _M3
        return x ^ (x >> np.uint64(31))


def _uniform(seed: np.uint64, keys: np.ndarray, salt: str) -> np.ndarray:
    """Deterministic uniform [0, 1) per key."""
    with np.errstate(over="ignore"):
        h = _mix(keys.astype(np.uint64) * _M3 ^ seed ^ _SALT[salt])
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _mid_price(seed: np.uint64, minutes: np.ndarray) -> np.ndarray:
    """A smooth, symbol-specific price path over unix minutes."""
    s = int(seed)
    base = 10.0 + (s % 49_000) / 100.0
    phases = [((s >> (8 * k)) & 0xFF) / 255.0 * 2 * np.pi for k in range(1, 4)]
    t = minutes.astype(np.float64)
    return base * (
        1.0
        + 0.05 * np.sin(2 * np.pi * t / (390 * 20) + phases[0])
        + 0.02 * np.sin(2 * np.pi * t / 390 + phases[1])
        + 0.004 * np.sin(2 * np.pi * t / 37 + phases[2])
    )


class MinuteBars:
    """Column arrays of 1m bars for one symbol as served at `now_ns` (internal to the synthetic provider)."""

    __slots__ = ("close", "high", "low", "minutes", "open", "trades", "volume")

    def __init__(
        self,
        symbol: str,
        minute_starts_ns: np.ndarray,
        faults: SyntheticFaults,
        now_ns: int,
        *,
        fractional: bool = False,
    ) -> None:
        seed = symbol_seed(symbol)
        minutes = minute_starts_ns // _NS_PER_MIN
        if faults.no_trade_rate > 0:
            keep = _uniform(seed, minutes, "notrade") >= faults.no_trade_rate
            minutes = minutes[keep]
        self.minutes = minutes
        o = _mid_price(seed, minutes) * (1 + 0.0008 * (_uniform(seed, minutes, "o") - 0.5))
        c = _mid_price(seed, minutes + 1) * (1 + 0.0008 * (_uniform(seed, minutes, "c") - 0.5))
        scale = 1.0 + (int(seed) % 7)
        units = 100 + _uniform(seed, minutes, "v") * 20_000 * scale
        if faults.revision_rate > 0:
            # corrected after the fact: the bar ended `revision_delay` before now (late trades)
            ended_ns = (minutes + 1) * _NS_PER_MIN
            revised = (_uniform(seed, minutes, "rev") < faults.revision_rate) & (
                ended_ns + int(faults.revision_delay.seconds * 1e9) <= now_ns
            )
            move = faults.revision_size * (2 * _uniform(seed, minutes, "revc") - 1)
            c = np.where(revised, c * (1 + move), c)
            units = np.where(revised, units * (1.01 + 0.09 * _uniform(seed, minutes, "revv")), units)
        self.trades = units.astype(np.int64) // 50 + 1
        raw = split_multiplier(symbol, minutes * _NS_PER_MIN)
        if raw is not None:  # before a split: more per share, fewer shares (a raw series)
            o, c, units = o * raw, c * raw, units / raw
        self.open = np.round(o, 4)
        self.close = np.round(c, 4)
        self.high = np.round(np.maximum(o, c) * (1 + 0.001 * _uniform(seed, minutes, "h")), 4)
        self.low = np.round(np.minimum(o, c) * (1 - 0.001 * _uniform(seed, minutes, "l")), 4)
        whole = units.astype(np.int64)
        self.volume = np.round(units * _COIN_UNITS, 8) if fractional else whole.astype(np.float64)


def synthetic_capabilities(faults: SyntheticFaults) -> Capabilities:
    return Capabilities(
        bar_intervals=frozenset(Interval),
        quotes=True,
        corporate_actions=True,
        max_symbols_per_request=faults.symbols_per_request,
    )


class SyntheticProvider:
    """Offline provider; `name` lets tests run several instances (A and B) side by side."""

    default_calls_per_minute = DEFAULT_CALLS_PER_MINUTE

    def __init__(
        self,
        name: str = "synthetic",
        faults: SyntheticFaults | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.faults = faults or SyntheticFaults()
        self.capabilities = synthetic_capabilities(self.faults)
        self._clock = clock
        self._rng = random.Random(self.faults.seed)  # noqa: S311 - fault injection, not crypto
        self._on_call = on_call
        self.calls = 0

    async def aclose(self) -> None:
        return None

    # -- faults ---------------------------------------------------------------------------
    async def _call(self, kind: str) -> datetime:
        """Apply latency and faults for one call; returns the provider's 'now'."""
        self.calls += 1
        if self._on_call is not None:
            self._on_call(self.name, kind)
        f = self.faults
        delay = f.latency_ms + (self._rng.random() * f.latency_jitter_ms if f.latency_jitter_ms else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        now = self._clock()
        for window in f.outages:
            if window.start <= now < window.end:
                raise ServerError(self.name, "synthetic outage", status=503)
        if f.rate_429 and self._rng.random() < f.rate_429:
            raise RateLimitedError(
                self.name, "synthetic 429 Too Many Requests", retry_after=f.retry_after_seconds
            )
        if f.error_rate and self._rng.random() < f.error_rate:
            raise ServerError(self.name, "synthetic 500 Internal Server Error", status=500)
        return now

    # -- bars -----------------------------------------------------------------------------
    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        if len(request.symbols) > self.capabilities.max_symbols_per_request:
            raise RequestError(
                self.name,
                f"at most {self.capabilities.max_symbols_per_request} symbols per request",
                status=400,
            )
        now = await self._call(f"bars:{request.interval.value}")
        end = min(request.end, now)
        out: list[Bar] = []
        for symbol in request.symbols:
            out.extend(self.bars_for(symbol, request.exchange_mic, request.interval, request.start, end, now))
        return out

    def bars_for(
        self,
        symbol: str,
        mic: str,
        interval: Interval,
        start: datetime,
        end: datetime,
        now: datetime,
    ) -> list[Bar]:
        """Complete bars of one symbol in [start, end) as seen at `now` (no call accounting)."""
        start_ns, end_ns, now_ns = calendar.to_ns(start), calendar.to_ns(end), calendar.to_ns(now)
        starts = calendar.expected_bar_starts_ns(mic, interval, start_ns, end_ns)
        if starts.size == 0:
            return []
        ends = calendar.bar_end_ns(mic, interval, starts)
        complete = ends <= now_ns
        starts, ends = starts[complete], ends[complete]
        if starts.size == 0:
            return []
        f = self.faults
        seed = symbol_seed(symbol)
        fractional = mic == calendar.CRYPTO_MIC
        if f.drop_rate > 0:
            late = (now_ns - ends) < int(f.drop_heal.seconds * 1e9)
            dropped = late & (
                _uniform(seed ^ np.uint64(interval.seconds), starts // 1_000_000_000, "drop") < f.drop_rate
            )
            starts, ends = starts[~dropped], ends[~dropped]
        if interval is Interval.M1:
            mb = MinuteBars(symbol, starts, f, now_ns, fractional=fractional)
            return [
                Bar(
                    symbol=symbol,
                    interval=interval,
                    ts=calendar.to_datetime(m * _NS_PER_MIN),
                    open=float(o),
                    high=float(h),
                    low=float(lo),
                    close=float(c),
                    volume=float(v),
                    vwap=round((float(h) + float(lo) + float(c)) / 3, 4),
                    trade_count=int(n),
                    provider=self.name,
                )
                for m, o, h, lo, c, v, n in zip(
                    mb.minutes.tolist(), mb.open, mb.high, mb.low, mb.close, mb.volume, mb.trades, strict=True
                )
            ]
        return self._aggregate(symbol, mic, interval, (starts, ends), now_ns)

    def _aggregate(
        self, symbol: str, mic: str, interval: Interval, bars: tuple[np.ndarray, np.ndarray], now_ns: int
    ) -> list[Bar]:
        starts, ends = bars
        minute_starts = calendar.expected_bar_starts_ns(mic, Interval.M1, int(starts[0]), int(ends[-1]))
        mb = MinuteBars(symbol, minute_starts, self.faults, now_ns, fractional=mic == calendar.CRYPTO_MIC)
        mins_ns = mb.minutes * _NS_PER_MIN
        # each minute belongs to the bar whose start is the last one <= the minute
        owner = np.searchsorted(starts, mins_ns, side="right") - 1
        inside = (owner >= 0) & (mins_ns < ends[np.clip(owner, 0, None)])
        owner, idx = owner[inside], np.nonzero(inside)[0]
        if idx.size == 0:
            return []
        bars_with_data, first = np.unique(owner, return_index=True)
        last = np.append(first[1:], owner.size) - 1
        sel = idx
        o = mb.open[sel][first]
        c = mb.close[sel][last]
        h = np.maximum.reduceat(mb.high[sel], first)
        lo = np.minimum.reduceat(mb.low[sel], first)
        v = np.add.reduceat(mb.volume[sel], first)
        n = np.add.reduceat(mb.trades[sel], first)
        pv = np.add.reduceat(((mb.high + mb.low + mb.close) / 3 * mb.volume)[sel], first)
        out = []
        for k, b in enumerate(bars_with_data.tolist()):
            vol = round(float(v[k]), 8)
            out.append(
                Bar(
                    symbol=symbol,
                    interval=interval,
                    ts=calendar.to_datetime(starts[b]),
                    open=float(o[k]),
                    high=float(h[k]),
                    low=float(lo[k]),
                    close=float(c[k]),
                    volume=vol,
                    vwap=round(float(pv[k]) / vol, 4) if vol else None,
                    trade_count=int(n[k]),
                    provider=self.name,
                )
            )
        return out

    # -- corporate actions ----------------------------------------------------------------
    async def fetch_corporate_actions(
        self, symbols: Sequence[str], exchange_mic: str, start: date, end: date
    ) -> list[CorporateAction]:
        await self._call("corporate_actions")
        wanted = set(symbols)
        return [
            a
            for a in synthetic_actions(self.name)
            if start <= a.ex_date <= end and (a.symbol in wanted or a.old_ticker in wanted)
        ]

    # -- quotes ---------------------------------------------------------------------------
    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        now = await self._call("quotes")
        return [self.quote_at(s, exchange_mic, now) for s in symbols]

    def quote_at(self, symbol: str, mic: str, now: datetime) -> Quote:
        """The quote a symbol shows at `now`: live inside a session, last close outside."""
        seed = symbol_seed(symbol)
        if calendar.is_open_at(mic, now):
            ts = now.replace(microsecond=0)
            second = np.array([calendar.to_ns(ts) // 1_000_000_000])
            last = float(
                _mid_price(seed, second // 60)[0] * (1 + 0.0004 * (_uniform(seed, second, "q")[0] - 0.5))
            )
        else:
            close = _previous_close(mic, now)
            ts = close
            last_minute = np.array([calendar.to_ns(close) // _NS_PER_MIN - 1])
            minute = MinuteBars(symbol, last_minute * _NS_PER_MIN, self.faults, calendar.to_ns(now))
            last = float(minute.close[0])
        last = round(last, 4)
        spread = max(0.01, round(last * 0.0002, 4))
        size = _uniform(seed, np.array([calendar.to_ns(ts) // 1_000_000_000]), "qs")[0]
        units = (100 + size * 900, 100 + (1 - size) * 900)
        crypto = mic == calendar.CRYPTO_MIC
        bid_size, ask_size = (round(u * _COIN_UNITS * 10, 6) if crypto else float(int(u)) for u in units)
        return Quote(
            symbol=symbol,
            ts=ts,
            provider=self.name,
            last=last,
            bid=round(last - spread / 2, 4),
            ask=round(last + spread / 2, 4),
            bid_size=bid_size,
            ask_size=ask_size,
        )


def _previous_close(mic: str, now: datetime) -> datetime:
    """Close of the latest session that closed at or before `now`."""
    opened = calendar.last_completed_session_open(mic, now)
    _, close, _ = calendar.session_window(mic, opened)
    return close


_ENV_KNOBS = {
    "MD_SYNTHETIC_LATENCY_MS": "latency_ms",
    "MD_SYNTHETIC_LATENCY_JITTER_MS": "latency_jitter_ms",
    "MD_SYNTHETIC_ERROR_RATE": "error_rate",
    "MD_SYNTHETIC_RATE_429": "rate_429",
    "MD_SYNTHETIC_DROP_RATE": "drop_rate",
    "MD_SYNTHETIC_DROP_HEAL": "drop_heal",
    "MD_SYNTHETIC_NO_TRADE_RATE": "no_trade_rate",
    "MD_SYNTHETIC_SYMBOLS_PER_REQUEST": "symbols_per_request",
    "MD_SYNTHETIC_SEED": "seed",
    "MD_SYNTHETIC_OUTAGES": "outages",
    "MD_SYNTHETIC_REVISION_RATE": "revision_rate",
    "MD_SYNTHETIC_REVISION_DELAY": "revision_delay",
    "MD_SYNTHETIC_REVISION_SIZE": "revision_size",
}


def faults_with_env(base: SyntheticFaults | None, env: Mapping[str, str] | None = None) -> SyntheticFaults:
    """The policy's fault knobs with MD_SYNTHETIC_* environment overrides applied.

    MD_SYNTHETIC_OUTAGES is a comma-separated list of `START/END` ISO 8601 instants.

    Raises:
        ValueError: an override that does not fit its knob (named in the message).
    """
    env = os.environ if env is None else env
    data = msgspec.to_builtins(base or SyntheticFaults(), enc_hook=enc_hook)
    for var, knob in _ENV_KNOBS.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if knob == "outages":
            windows = []
            for part in raw.split(","):
                start, sep, end = part.strip().partition("/")
                if not sep:
                    raise ValueError(f"{var}: expected START/END[,START/END...], got {part!r}")
                windows.append({"start": start.strip(), "end": end.strip()})
            data[knob] = windows
        else:
            data[knob] = raw
    try:
        return msgspec.convert(data, SyntheticFaults, dec_hook=dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"MD_SYNTHETIC_* override: {exc}") from exc


def _policy_capabilities(cfg: ProviderPolicy) -> Capabilities:
    # The policy's faults, not env overrides: this answers "what does this policy document ask for".
    return synthetic_capabilities(cfg.faults or SyntheticFaults())


def _build(name: str, cfg: ProviderPolicy, credentials: Credentials | None) -> SyntheticProvider:
    return SyntheticProvider(name, faults_with_env(cfg.faults))


SPEC = ProviderSpec(
    kind="synthetic",
    capabilities=_policy_capabilities,
    default_calls_per_minute=DEFAULT_CALLS_PER_MINUTE,
    factory=_build,
)
