"""The ops token and provider keys never appear in logs, errors, stored state or /metrics.

Representative flows run with every log record captured at DEBUG (httpx's request lines
included) and the process's stdout/stderr captured: Finnhub and Alpaca adapters with fake
keys against a local server that answers 401, 403, 429 and 500 (some error bodies echo the
key back, as vendors do), through the shared registry (breaker reasons and samples land in
Redis); ops calls with the token (accepted, refused, malformed, conflicting); the
provider stats and a /metrics scrape. Then every captured text is searched for each secret.
"""

from __future__ import annotations

import logging
import re
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from market_data.policy import parse_policy
from market_data.providers.base import BarRequest
from market_data.records import Interval
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.settings import get_settings
from tests.conftest import REDIS_PREFIX
from tests.faults.conftest import DEFAULT_POLICY, NOW

TOKEN = get_settings().ops_token
FINNHUB_KEY = f"fh-key-{uuid.uuid4().hex}"
ALPACA_ID = f"PKID{uuid.uuid4().hex.upper()}"
ALPACA_SECRET = f"alpaca-secret-{uuid.uuid4().hex}"
SECRETS = {
    "ops token": TOKEN,
    "finnhub key": FINNHUB_KEY,
    "alpaca key id": ALPACA_ID,
    "alpaca secret": ALPACA_SECRET,
}


def vendor_policy(base: str) -> str:
    text = DEFAULT_POLICY
    text = text.replace(
        '[providers.finnhub]\nkind = "finnhub"\nenabled = false',
        '[providers.finnhub]\nkind = "finnhub"\nenabled = true',
    )
    text = text.replace(
        '[providers.alpaca]\nkind = "alpaca"\nenabled = false',
        '[providers.alpaca]\nkind = "alpaca"\nenabled = true',
    )
    text = text.replace(
        'pool = "provider_finnhub"', f'pool = "provider_finnhub"\nbase_url = "{base}/finnhub/api/v1"'
    )
    text = text.replace('pool = "provider_alpaca"', f'pool = "provider_alpaca"\nbase_url = "{base}/alpaca"')
    text = text.replace('capabilities = ["quotes"]\n', "")
    return re.sub(
        r"\[providers\.synthetic(_backup)?\]\nkind = \"synthetic\"\nenabled = true",
        lambda m: m.group(0).replace("true", "false"),
        text,
    )


def answers() -> object:
    """429s and 500s (the key in the page) first, then 401/403 echoing the credentials sent."""
    sequence = [429, 500, 429, 500, 500, 500, 500, 500, 401, 403]
    n = {"i": 0}

    def handler(request: Request) -> Response:
        status = sequence[n["i"]] if n["i"] < len(sequence) else sequence[-2 + n["i"] % 2]
        n["i"] += 1
        sent = request.headers.get("X-Finnhub-Token") or request.headers.get("APCA-API-KEY-ID") or "?"
        secret = request.headers.get("APCA-API-SECRET-KEY", "")
        if status == 401:
            return Response(
                f'{{"error": "Invalid API key {sent}"}}', status=401, content_type="application/json"
            )
        if status == 403:
            body = f'{{"message": "forbidden for {sent}:{secret}"}}'
            return Response(body, status=403, content_type="application/json")
        if status == 429:
            return Response("slow down", status=429, headers={"Retry-After": "0"})
        return Response(f"<html>upstream error, key={sent} secret={secret}</html>", status=500)

    return handler


def everything_logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    records = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r} {getattr(r, '__dict__', {})!r}"
        for r in caplog.records
    )
    return "\n".join([caplog.text, records, out, err])


async def test_no_secret_reaches_logs_errors_state_or_metrics(
    client: AsyncTestClient, conn, redis_client, httpserver: HTTPServer, caplog, capfd, monkeypatch
) -> None:
    monkeypatch.setenv("FINNHUB_API_KEY", FINNHUB_KEY)
    monkeypatch.setenv("ALPACA_API_KEY_ID", ALPACA_ID)
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", ALPACA_SECRET)
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "market_data", "api"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        caplog.set_level(logging.DEBUG, logger=name)
    httpserver.expect_request(re.compile(".*")).respond_with_handler(answers())
    seen: list[str] = []

    # -- providers: every call fails in a different way; errors and breakers keep the reasons
    policy = parse_policy(vendor_policy(httpserver.url_for("").rstrip("/")))
    registry = ProviderRegistry.shared(policy, get_settings(), retry_wait=lambda _s: 0.0)
    assert set(registry.adapters) == {"finnhub", "alpaca"}, registry.unavailable
    request = BarRequest(
        symbols=("AAPL",), exchange_mic="XNAS", interval=Interval.M1, start=NOW.replace(hour=15), end=NOW
    )
    for _ in range(4):
        for call in (registry.fetch_quotes(["AAPL"], "XNAS"), registry.fetch_bars(request)):
            with pytest.raises(AllProvidersFailed) as failed:
                await call
            seen += [str(failed.value), repr(failed.value), repr(failed.value.errors)]
    statuses = await registry.statuses()
    seen.append(msgspec.json.encode(statuses).decode())
    await registry.aclose()
    assert len(httpserver.log) >= 9  # 429s and 500s, then the 401/403s that open the breakers
    assert any("Invalid API key [redacted]" in s for s in seen)  # the vendor's words are kept ...
    keys = [k async for k in redis_client.scan_iter(match=f"{REDIS_PREFIX}*")]
    for key in keys:  # ... and so is what the registry stored about the calls
        seen.append(
            repr(
                await redis_client.get(key)
                if await redis_client.type(key) == b"string"
                else await redis_client.lrange(key, 0, -1)
            )
        )

    # -- the API: ops calls with the token, the provider stats, the metrics ------------------
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Ops-Actor": "secrets-test"}
    for method, path, body in [
        ("GET", "/ops/policy", None),
        ("GET", "/ops/policy/versions", None),
        ("POST", "/ops/validate", {"policy": "not = [valid"}),
        ("POST", "/ops/validate", {"policy": DEFAULT_POLICY}),
        ("POST", "/ops/reload", {"policy": DEFAULT_POLICY, "expected_active": 999}),
        (
            "POST",
            "/ops/backfill",
            {
                "symbols": ["NOPE"],
                "interval": "1m",
                "start": "2026-11-23T14:30:00Z",
                "end": "2026-11-23T15:00:00Z",
            },
        ),
        ("POST", "/ops/backfill", {"symbols": "AAPL"}),
        ("POST", "/ops/dlq/backfills/requeue/424242", None),
        ("GET", "/ops/cursor/AAPL/1m/synthetic", None),
        ("GET", "/ops/dlq/backfills", None),
        ("GET", "/ops/policy", {"Authorization": f"Bearer {TOKEN}x"}),
    ]:
        r = await client.request(method, path, json=body, headers=auth)
        assert r.status_code < 500, (path, r.text)
        seen += [r.text, repr(dict(r.headers))]
    for path in ("/stats/providers", "/metrics", "/health", "/", "/schema/openapi.json"):
        r = await client.get(path)
        seen.append(r.text)
    audit = await conn.fetch("SELECT actor, client, method, path, detail::text FROM ops_audit")
    assert len(audit) >= 10
    seen += [repr(tuple(row)) for row in audit]

    blob = "\n".join([*seen, everything_logged(caplog, capfd)])
    assert "HTTP Request: GET" in blob and "provider finnhub failed" in blob  # the logs were captured
    leaks = {what: blob.count(secret) for what, secret in SECRETS.items() if secret in blob}
    assert not leaks, {what: _around(blob, SECRETS[what]) for what in leaks}


def _around(blob: str, secret: str) -> str:
    i = blob.index(secret)
    return blob[max(0, i - 150) : i + len(secret) + 50].replace(secret, "<SECRET>")
