"""Operator commands behind `./dev` (`python -m market_data.cli --help`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from market_data import db
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

    from market_data.integrity import airflow_metadata_dsn, run_integrity_checks
    from market_data.policy.schema import Duration
    from market_data.records import utcnow

    since = None
    if args.since:
        try:
            since = utcnow() - Duration(args.since).delta
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
    airflow_dsn = None if args.no_airflow else (args.airflow_database_url or airflow_metadata_dsn())
    s = get_settings()
    conn = await db.connect(args.database_url or s.database_url)
    try:
        pending = await db.pending_migrations(conn, s.sql_dir)
        if pending:
            print(
                f"the database is not migrated ({', '.join(pending)} pending): run ./dev migrate",
                file=sys.stderr,
            )
            return 2
        report = await run_integrity_checks(conn, airflow_dsn=airflow_dsn, since=since)
    finally:
        await conn.close()
    print(msgspec.json.encode(report).decode() if args.json else report.text())
    return 0 if report.ok else 1


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
    if fresh == text:
        print(f"{path}: up to date with the metric catalog")
        return 0
    if args.check:
        print(f"{path}: differs from the metric catalog; run `python -m market_data.cli statsd-mapping`")
        return 1
    path.write_text(fresh)
    print(f"{path}: rewritten from the metric catalog")
    return 0


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
        "--airflow-database-url",
        help="Airflow's metadata database (default: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)",
    )
    integrity.add_argument("--no-airflow", action="store_true", help="skip the DLQ-vs-Airflow check")
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
        handler = {
            "init": cmd_init,
            "migrate": cmd_migrate,
            "create-db": cmd_create_db,
            "seed": cmd_seed,
            "check": cmd_check,
            "integrity": cmd_integrity,
        }
        return asyncio.run(handler[args.command](args))
    except (db.MigrationError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
