"""Operator commands behind `./dev` (`python -m market_data.cli --help`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from market_data import db
from market_data.backfill.requests import BackfillRequestView
from market_data.policy import PolicyError, load_policy_file
from market_data.records import Tier
from market_data.settings import get_settings
from market_data.universe import generated_entries, load_seed, upsert_universe


async def _bootstrap_policy(conn: asyncpg.Connection, path: Path, include_dir: Path) -> str:
    """Store the policy file as the active version when Postgres holds none yet."""
    from market_data.policy.store import store_initial_policy
    from market_data.policy.validation import checked_policy, load_known_pools

    loaded = load_policy_file(path)
    checked_policy(loaded.body, load_known_pools(include_dir))
    return await store_initial_policy(conn, loaded, actor="./dev")


async def cmd_init(args: argparse.Namespace) -> int:
    s = get_settings()
    dsn = args.database_url or s.database_url
    if await db.ensure_database(dsn):
        print(f"created database {db.dsn_database(dsn)}")
    conn = await db.connect(dsn)
    try:
        applied = await db.apply_migrations(conn, s.sql_dir)
        print(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")
        seed = load_seed(s.include_dir / "universe.csv")
        await upsert_universe(conn, seed)
        print(f"universe: {len(seed)} seed symbols")
        print(await _bootstrap_policy(conn, s.policy_file, s.include_dir))
    finally:
        await conn.close()
    return 0


async def cmd_create_db(args: argparse.Namespace) -> int:
    dsn = args.database_url or get_settings().database_url
    created = await db.ensure_database(dsn)
    print(f"database {db.dsn_database(dsn)}: {'created' if created else 'exists'}")
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    s = get_settings()
    conn = await db.connect(args.database_url or s.database_url)
    try:
        applied = await db.apply_migrations(conn, s.sql_dir)
    finally:
        await conn.close()
    print(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")
    return 0


async def cmd_seed(args: argparse.Namespace) -> int:
    s = get_settings()
    conn = await db.connect(args.database_url or s.database_url)
    try:
        if args.generate:
            entries = generated_entries(args.generate, Tier(args.tier), args.exchange, args.prefix)
            await upsert_universe(conn, entries)
            print(f"universe: {len(entries)} generated {args.tier} symbols ({entries[0].symbol} ..)")
        else:
            seed = load_seed(s.include_dir / "universe.csv")
            await upsert_universe(conn, seed)
            print(f"universe: {len(seed)} seed symbols")
    finally:
        await conn.close()
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when Postgres and Redis answer; print what is down otherwise."""
    import redis.asyncio as aioredis

    s = get_settings()
    down = []
    try:
        conn = await asyncpg.connect(db.dsn_with_database(s.database_url, "postgres"), timeout=3)
        await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        down.append(f"postgres ({s.database_url.split('@')[-1]}): {exc}")
    try:
        r = aioredis.from_url(s.redis_url, socket_timeout=3)
        await r.ping()
        await r.aclose()
    except (OSError, aioredis.RedisError) as exc:
        down.append(f"redis ({s.redis_url.split('@')[-1]}): {exc}")
    for line in down:
        print(f"not reachable: {line}", file=sys.stderr)
    return 1 if down else 0


async def cmd_integrity(args: argparse.Namespace) -> int:
    """Run the integrity checks; exit 1 when one fails (skipped checks say why)."""
    import msgspec

    from market_data.airflow_rest import AirflowRest
    from market_data.integrity import run_integrity_checks
    from market_data.policy.schema import Duration
    from market_data.records import utcnow

    since = None
    if args.since:
        try:
            since = utcnow() - Duration(args.since).delta
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
    s = get_settings()
    if args.airflow_url:
        s = msgspec.structs.replace(s, airflow_api_url=args.airflow_url)
    airflow = None if args.no_airflow else AirflowRest.from_settings(s)
    conn = await db.connect(args.database_url or s.database_url)
    try:
        pending = await db.pending_migrations(conn, s.sql_dir)
        if pending:
            print(
                f"the database is not migrated ({', '.join(pending)} pending): run ./dev migrate",
                file=sys.stderr,
            )
            return 2
        report = await run_integrity_checks(conn, airflow=airflow, since=since)
    finally:
        await conn.close()
        if airflow is not None:
            await airflow.aclose()
    print(msgspec.json.encode(report).decode() if args.json else report.text())
    return 0 if report.ok else 1


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if hasattr(value, "strftime") else "-"


def request_text(view: BackfillRequestView) -> str:
    """A backfill request as `./dev backfill status ID` prints it."""
    c = view.job_counts
    lines = [
        f"backfill request {view.request_id}: {view.status}",
        f"  asked     {_when(view.created_at)} by {view.actor} ({view.source}"
        + (f", run {view.dag_run_id}" if view.dag_run_id else "")
        + ")",
        f"  range     {', '.join(view.symbols)} {view.interval} "
        f"{view.start.isoformat()} .. {view.end.isoformat()}"
        + (f" (policy version {view.policy_version})" if view.policy_version is not None else ""),
        f"  jobs      {c.queued} queued, {c.running} running, {c.done} done, {c.dead} dead; "
        f"{view.bars_written} bars written",
    ]
    if view.refused:
        lines.append(f"  refused   {view.refused} (tier queues at their cap)")
    for j in view.jobs:
        where = f" {j.provider} {j.batch} of {j.run_id}" if j.run_id else ""
        lines.append(
            f"  job {j.id:<8} {j.symbol:<8} {j.status:<8} {j.start:%Y-%m-%d %H:%M}..{j.end:%Y-%m-%d %H:%M} "
            f"bars {j.bars_inserted} tries {j.attempts}{where}"
        )
    lines.extend(f"  error     job {e.job_id} {e.symbol} ({e.status}): {e.error}" for e in view.errors)
    return "\n".join(lines)


def requests_table(views: list[BackfillRequestView]) -> str:
    """Recent backfill requests, one line each (`./dev backfill status`)."""
    if not views:
        return "no backfill requests yet"
    lines = [f"{'id':>6}  {'status':<8} {'asked':<20} {'jobs q/r/d/x':<13} {'bars':>8}  symbols"]
    for v in views:
        c = v.job_counts
        symbols = ", ".join(v.symbols[:5]) + (f" (+{len(v.symbols) - 5})" if len(v.symbols) > 5 else "")
        lines.append(
            f"{v.request_id:>6}  {v.status:<8} {_when(v.created_at):<20} "
            f"{f'{c.queued}/{c.running}/{c.done}/{c.dead}':<13} {v.bars_written:>8}  {symbols} {v.interval}"
        )
    return "\n".join(lines)


async def cmd_backfill_status(args: argparse.Namespace) -> int:
    """One request's progress, or the recent requests."""
    import msgspec

    from market_data.backfill.requests import get_request, recent_requests

    conn = await db.connect(args.database_url or get_settings().database_url)
    try:
        if args.request_id is None:
            views = await recent_requests(conn, limit=args.limit)
            print(msgspec.json.encode(views).decode() if args.json else requests_table(views))
            return 0
        view = await get_request(conn, args.request_id)
    finally:
        await conn.close()
    if view is None:
        print(f"request_id: no backfill request {args.request_id}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(view).decode() if args.json else request_text(view))
    return 0


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from market_data.policy.validation import load_known_pools, validate_policy_text

    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    problems = validate_policy_text(text, load_known_pools(get_settings().include_dir))
    if problems:
        print(f"{args.file}: refused, {len(problems)} problem(s):")
        for p in problems:
            print(f"  {p.path}: {p.reason}")
        return 1
    print(f"{args.file}: OK")
    return 0


def _write_generated(path: Path, current: str, fresh: str, *, check: bool, source: str, command: str) -> int:
    """Write a generated file when it differs from what `source` gives (`check`: only compare)."""
    if fresh == current:
        print(f"{path}: up to date with {source}")
        return 0
    if check:
        print(f"{path}: differs from {source}; run `python -m market_data.cli {command}`")
        return 1
    path.write_text(fresh)
    print(f"{path}: rewritten from {source}")
    return 0


def cmd_statsd_mapping(args: argparse.Namespace) -> int:
    from market_data.metrics.statsd_mapping import MappingFileError, with_generated_part

    settings = get_settings()
    path = Path(args.file) if args.file else settings.include_dir / "statsd" / "mapping.yml"
    try:
        text = path.read_text()
        fresh = with_generated_part(text, args.prefix or settings.statsd_prefix)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except MappingFileError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    return _write_generated(
        path, text, fresh, check=args.check, source="the metric catalog", command="statsd-mapping"
    )


def cmd_alert_tests(args: argparse.Namespace) -> int:
    from market_data.metrics.alert_tests import RULE_TEST_FILE, rule_tests

    folder = get_settings().include_dir / "prometheus"
    path = folder / RULE_TEST_FILE
    current = path.read_text() if path.exists() else ""
    return _write_generated(
        path,
        current,
        rule_tests(folder),
        check=args.check,
        source="the exchange calendars",
        command="alert-tests",
    )


def cmd_celery_env(args: argparse.Namespace) -> int:
    """Print the CeleryExecutor settings as `export NAME=value` lines (for ./dev's shell)."""
    import os
    import shlex

    from market_data.airflow.executor import celery_env, worker_concurrency

    conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not conn:
        print("error: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set", file=sys.stderr)
        return 2
    s = get_settings()
    parallelism = int(os.environ.get("AIRFLOW__CORE__PARALLELISM") or 32)
    env = celery_env(
        redis_url=s.redis_url,
        redis_prefix=s.redis_prefix,
        sql_alchemy_conn=conn,
        concurrency=args.concurrency or worker_concurrency(parallelism, args.workers),
    )
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="market_data", description=__doc__)
    parser.add_argument("--database-url", help="override DATABASE_URL")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the database, apply migrations, seed the universe and policy")
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("create-db", help="create the database of --database-url (or DATABASE_URL) if missing")
    seed = sub.add_parser("seed", help="load include/universe.csv, or --generate N made-up symbols")
    seed.add_argument("--generate", type=int, default=0, metavar="N")
    seed.add_argument("--tier", default="T0", choices=[t.value for t in Tier])
    seed.add_argument("--exchange", default="XNYS")
    seed.add_argument("--prefix", default="GEN")
    sub.add_parser("check", help="exit 0 when Postgres and Redis answer")
    integrity = sub.add_parser("integrity", help="check the store's invariants; exit 1 when one fails")
    integrity.add_argument("--json", action="store_true", help="print the report as JSON")
    integrity.add_argument(
        "--since", metavar="DURATION", help="check bar versions of the last DURATION (e.g. 7d)"
    )
    integrity.add_argument(
        "--airflow-url",
        help="Airflow's api-server, whose REST API the DLQ check reads (default: MD_AIRFLOW_API_URL)",
    )
    integrity.add_argument("--no-airflow", action="store_true", help="skip the DLQ-vs-Airflow check")
    backfill = sub.add_parser("backfill", help="backfill requests")
    bsub = backfill.add_subparsers(dest="backfill_command", required=True)
    status = bsub.add_parser(
        "status", help="a backfill request's progress (jobs, bars, errors), or the recent requests"
    )
    status.add_argument("request_id", nargs="?", type=int, help="the id POST /ops/backfill or a trigger gave")
    status.add_argument("--limit", type=int, default=20, help="recent requests to list (default 20)")
    status.add_argument("--json", action="store_true", help="print JSON")
    policy = sub.add_parser("policy", help="policy tools")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    validate = psub.add_parser("validate", help="validate a policy file; print every problem")
    validate.add_argument("file")
    mapping = sub.add_parser(
        "statsd-mapping",
        help="write the metric catalog's rules into include/statsd/mapping.yml (--check: only compare)",
    )
    mapping.add_argument("--check", action="store_true", help="exit 1 when the file differs; write nothing")
    mapping.add_argument("--file", help="the mapping file (default: include/statsd/mapping.yml)")
    mapping.add_argument("--prefix", help="the statsd prefix of our metrics (default: STATSD_PREFIX)")
    celery = sub.add_parser(
        "celery-env",
        help="print the CeleryExecutor settings (broker, result backend, concurrency) as export lines",
    )
    celery.add_argument("--workers", type=int, default=1, help="workers sharing [core] parallelism (1)")
    celery.add_argument("--concurrency", type=int, default=0, help="task slots per worker (default: shared)")
    alert_tests = sub.add_parser(
        "alert-tests",
        help="write include/prometheus/alerts_calendar_test.yml from the exchange calendars "
        "(--check: only compare)",
    )
    alert_tests.add_argument(
        "--check", action="store_true", help="exit 1 when the file differs; write nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "policy":
            return cmd_policy_validate(args)
        if args.command == "statsd-mapping":
            return cmd_statsd_mapping(args)
        if args.command == "celery-env":
            return cmd_celery_env(args)
        if args.command == "alert-tests":
            return cmd_alert_tests(args)
        handler = {
            "init": cmd_init,
            "migrate": cmd_migrate,
            "create-db": cmd_create_db,
            "seed": cmd_seed,
            "check": cmd_check,
            "integrity": cmd_integrity,
            "backfill": cmd_backfill_status,
        }
        return asyncio.run(handler[args.command](args))
    except (db.MigrationError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
