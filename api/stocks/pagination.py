"""Keyset pagination of /history: the window a read covers and its opaque page token.

A token is base64url(version byte, 8-byte checksum, msgpack(HistoryWindow)). It carries the
whole read (symbol, timeframe, alignment, the stored interval it is read or built from, sort,
walk direction, [start, end), the `as_of` pinned by the first page) and the `ts` of the last
bar served (a built bar's bucket start), so the next page starts after (or before) that bar,
and every page reads the same versions from the same stored interval. The token is opaque but
not secret: the checksum catches corrupted or edited tokens, and every field is checked
again, so a hand-made token can ask for nothing a plain query could not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timedelta

import msgspec

from api.errors import BadParameter
from api.stocks.params import EARLIEST, LATEST, SortOrder, bar_range, instant, max_span
from market_data.adjustment import Adjustment
from market_data.bar_reads import BarRead, resolve_base
from market_data.records import Interval, is_valid_symbol
from market_data.timeframes import Align, Timeframe, TimeframeError, divides, parse_timeframe

_VERSION = 2
_DIGEST = 8
_PERSON = b"md-history-page"


class HistoryWindow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """What a /history read covers, and (in a token) where the last page ended."""

    symbol: str
    timeframe: str
    """The timeframe asked for (`interval`)."""
    align: Align
    base: Interval
    """The stored interval the bars are read (or built) from, fixed by the first page."""
    sort: SortOrder
    backward: bool
    """Pages walk from `end` towards `start` (newest first, or the tail of the range)."""
    start: datetime | None
    """None: no lower bound (the tail of the data before `end`)."""
    end: datetime
    as_of: datetime
    cursor: datetime | None = None
    """`ts` of the last bar served: the next page starts after it in walk order."""
    adjustment: Adjustment = Adjustment.RAW

    def remaining(self) -> tuple[datetime, datetime]:
        """[start, end) of the bars not served yet."""
        lo = EARLIEST if self.start is None else self.start
        if self.cursor is None:
            return lo, self.end
        if self.backward:
            return lo, self.cursor
        return self.cursor + timedelta(microseconds=1), self.end

    def read(self, exchange_mic: str, security_id: int | None = None) -> BarRead:
        """The read of the bars not served yet (of security `security_id`, for adjustment)."""
        lo, hi = self.remaining()
        return BarRead(
            symbol=self.symbol,
            exchange_mic=exchange_mic,
            timeframe=parse_timeframe(self.timeframe),
            align=self.align,
            base=self.base,
            start=lo,
            end=hi,
            as_of=self.as_of,
            backward=self.backward,
            adjustment=self.adjustment,
            security_id=security_id,
        )


def _timeframe_of(value: str) -> Timeframe | None:
    try:
        return parse_timeframe(value)
    except TimeframeError:
        return None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(HistoryWindow)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST, person=_PERSON).digest()


def encode_token(window: HistoryWindow) -> str:
    payload = _encoder.encode(window)
    raw = bytes([_VERSION]) + _checksum(payload) + payload
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _bad(why: str) -> BadParameter:
    return BadParameter(f"page_token: {why}", parameter="page_token")


def decode_token(token: str) -> HistoryWindow:
    """The window a token continues.

    Raises:
        BadParameter: the token is not one this service issued, or was altered.
    """
    try:
        raw = base64.urlsafe_b64decode(token.strip() + "=" * (-len(token.strip()) % 4))
    except (binascii.Error, ValueError):
        raise _bad("not a page token (not base64url)") from None
    if len(raw) <= 1 + _DIGEST or raw[0] != _VERSION:
        raise _bad("not a page token of this service (or from an older version)")
    digest, payload = raw[1 : 1 + _DIGEST], raw[1 + _DIGEST :]
    if not hmac.compare_digest(digest, _checksum(payload)):
        raise _bad("the token was altered or truncated; use next_page_token as returned")
    try:
        w = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _bad("the token was altered; use next_page_token as returned") from None
    lo = EARLIEST if w.start is None else w.start
    tf = _timeframe_of(w.timeframe)
    ok = (
        w.cursor is not None
        and tf is not None
        and divides(w.base, tf, Align.SESSION, mic="")  # nesting from the segment start needs no calendar
        and is_valid_symbol(w.symbol)
        and EARLIEST <= lo <= w.cursor < w.end < LATEST
        and (w.start is None or w.end - w.start <= max_span(tf))
        and w.backward == (w.sort is SortOrder.DESC or w.start is None)
        and EARLIEST <= w.as_of < LATEST
    )
    if not ok:
        raise _bad("the token was altered; use next_page_token as returned")
    return w


def history_window(
    *,
    symbol: str,
    exchange_mic: str,
    timeframe: Timeframe,
    align: Align,
    stored: set[Interval],
    sort: SortOrder,
    start: datetime | None,
    end: datetime | None,
    as_of: datetime | None,
    page_token: str | None,
    now: datetime,
    as_of_default: datetime | None = None,
    adjustment: Adjustment = Adjustment.RAW,
) -> HistoryWindow:
    """The window of this request: a new one, or the one its page token continues.

    With a token, the other parameters must repeat the first request's (`start`, `end` and
    `as_of` may be left out: the token holds them). A new window is read from the stored
    interval `bar_reads.resolve_base` picks among `stored`; without `as_of` it is pinned at
    `as_of_default` (default `now`; earlier while a standby that trails the primary serves it).

    Raises:
        BadParameter: a bad range or token, or a timeframe `stored` cannot build.
    """
    if page_token is None:
        lo, hi = bar_range(timeframe, start, end, now)
        return HistoryWindow(
            symbol=symbol,
            timeframe=timeframe.value,
            align=align,
            base=resolve_base(timeframe, align, stored, symbol, exchange_mic),
            sort=sort,
            backward=sort is SortOrder.DESC or start is None,
            start=lo,
            end=hi,
            as_of=instant(as_of, "as_of") if as_of is not None else (as_of_default or now),
            adjustment=adjustment,
        )
    w = decode_token(page_token)
    checks: list[tuple[str, object, object]] = [
        ("symbol", symbol, w.symbol),
        ("interval", timeframe.value, w.timeframe),
        ("align", align, w.align),
        ("sort", sort, w.sort),
        ("adjustment", adjustment, w.adjustment),
    ]
    pinned: dict[str, tuple[datetime | None, datetime | None]] = {
        "start": (start, w.start),
        "end": (end, w.end),
        "as_of": (as_of, w.as_of),
    }
    for name, (value, held) in pinned.items():
        if value is not None:
            checks.append((name, instant(value, name), held))
    for name, asked, issued in checks:
        if asked != issued:
            raise _bad(f"was issued for another {name} ({issued}); repeat the first request's parameters")
    return w
