"""Start the API: `python -m api.serve [--host H] [--port P]` (what `./dev up` and the image run).

`MD_API_WORKERS` (default 1) is the one setting of how many API processes serve: uvicorn's
supervisor starts that many, each with its own connections, its own LISTEN on the primary
(so every process fans every notification out to its own WebSocket clients) and the same
listening socket (the kernel hands each new connection to one of them); it restarts a
process that dies.

With more than one process, `/metrics` must show the whole API whichever process answers:
prometheus-client's multiprocess mode keeps every process's samples in files under
`PROMETHEUS_MULTIPROC_DIR`, and each scrape adds them up. The directory must be fresh at
every start (files of an earlier run would be added to this one's counters) and private to
this machine's processes (a process id names each file): given in the environment, it is
emptied at start and at exit; not given, a temporary one is made and removed at exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path

WORKERS_ENV = "MD_API_WORKERS"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
APP_FACTORY = "api.app:create_app"
MAX_WORKERS = 64


class LaunchError(ValueError):
    """A setting the API cannot start with (the message names it)."""


def workers_from_env(environ: Mapping[str, str]) -> int:
    """`MD_API_WORKERS` as a number of processes (1 when unset or empty).

    Raises:
        LaunchError: not a whole number from 1 to MAX_WORKERS.
    """
    raw = environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return 1
    try:
        workers = int(raw)
    except ValueError:
        raise LaunchError(f"{WORKERS_ENV}: {raw[:20]!r} is not a whole number of API processes") from None
    if not 1 <= workers <= MAX_WORKERS:
        raise LaunchError(f"{WORKERS_ENV}: {workers} is out of range (1 to {MAX_WORKERS} API processes)")
    return workers


def empty_dir(path: Path) -> None:
    """Remove everything inside `path` (not `path` itself)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@contextmanager
def metrics_dir(environ: MutableMapping[str, str], workers: int) -> Iterator[Path | None]:
    """The multiprocess directory of this start, set in `environ` for the API processes.

    One process needs none (its registry is in memory), unless the environment names one:
    then it is used as given. The directory is empty when the processes start and is emptied
    (or, when made here, removed) when they have stopped.
    """
    given = environ.get(MULTIPROC_ENV, "").strip()
    if workers == 1 and not given:
        environ.pop(MULTIPROC_ENV, None)
        yield None
        return
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        empty_dir(path)
    else:
        path = Path(tempfile.mkdtemp(prefix="md-api-metrics-"))
    environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if given:
            empty_dir(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m api.serve",
        description=(
            "Start the market-data API: MD_API_WORKERS processes (default 1) under uvicorn. "
            "With more than one, PROMETHEUS_MULTIPROC_DIR (default: a temporary directory) holds "
            "the processes' metrics; it is emptied at start and at exit."
        ),
    )
    p.add_argument("--host", default=os.environ.get("MD_API_HOST", "127.0.0.1"), help="bind address")
    # a string default goes through `type` too: a bad MD_API_PORT is argparse's clear error
    port = os.environ.get("MD_API_PORT") or "8001"
    p.add_argument("--port", type=int, default=port, help="port (MD_API_PORT, 8001)")
    p.add_argument(
        "--app",
        default=APP_FACTORY,
        help=f"the ASGI app factory to serve, module:function ({APP_FACTORY}; the benchmarks "
        "serve their baseline apps with it, so both run under the same server settings)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-For gives the client's address (uvicorn's; default "
        "$FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        workers = workers_from_env(os.environ)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # prometheus-client chooses in-memory or file-backed values when it is first imported,
    # in each API process: the directory is in the environment before any process starts.
    with metrics_dir(os.environ, workers):
        import uvicorn

        from api.http_protocol import OneSendHttpProtocol

        uvicorn.run(
            args.app,
            factory=True,
            # uvicorn's httptools protocol, each response's head and body in one send
            http=OneSendHttpProtocol,
            host=args.host,
            port=args.port,
            workers=workers,
            log_level=args.log_level,
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=args.forwarded_allow_ips,
            # compressing every small message for every client costs more than it saves
            # (README, WebSockets: p99 ~60 ms with deflate vs ~20 ms without)
            ws_per_message_deflate=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
