"""docker-compose.yaml against ./dev, the locks and the code (Docker does not run here).

The compose file must run what `./dev up` runs: the same Airflow (image tag = the locked
version), the same Airflow and CeleryExecutor settings, the same default ports, only
environment names the code or the images read, every secret where it is needed and in
`.env.example`; and it must scale: Celery workers and API replicas without fixed host ports,
the replicas behind the proxy and found by Prometheus, healthchecks and restart policies on
every long-running service. Each check covers every service of a kind (all Airflow services,
every service built from this project), so services added later are held to the same rules.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from market_data.airflow.executor import LOCAL, celery_env, worker_args, worker_concurrency, worker_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DEV = (ROOT / "dev").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
OWN_IMAGE = "market-data:local"
AIRFLOW_SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")
API_SECRETS = ("MARKET_DATA_OPS_TOKEN",)
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}`; `$$` is a literal dollar sign
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# read by the images, not by our code: the official Airflow image's entrypoint and Airflow itself
IMAGE_ENV = {"AIRFLOW_HOME", "DUMB_INIT_SETSID"}


def env_of(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def with_defaults(value: str) -> str:
    """The value as compose sees it with no .env: each `${NAME:-default}` replaced by its default."""
    return INTERPOLATION.sub(lambda m: m.group(3) or "", value).replace("$$", "$")


def own_services() -> list[str]:
    return [n for n, s in SERVICES.items() if s.get("image") == OWN_IMAGE]


def airflow_services() -> list[str]:
    return [n for n in own_services() if command_of(n)[:1] == ["airflow"] or n == "airflow-init"]


def command_of(service: str) -> list[str]:
    cmd = SERVICES[service].get("command") or []
    return cmd if isinstance(cmd, list) else ["bash", "-c", cmd]


def long_running() -> list[str]:
    return [n for n, s in SERVICES.items() if s.get("restart") != "no"]


def dev_default(name: str) -> str:
    """The default ./dev gives a variable: `export NAME="${NAME:-default}"`."""
    m = re.search(rf'^export {name}="\$\{{{name}:-([^}}]*)\}}"', DEV, re.M)
    assert m, f"./dev does not default {name}"
    return m.group(1)


@cache
def dev_airflow_exports() -> dict[str, str]:
    """What ./dev's airflow_env gives Airflow (`AIRFLOW__*` settings, `AIRFLOW_CONN_*` connections):
    name -> value (its default where it has one)."""
    body = DEV[DEV.index("airflow_env() {") : DEV.index("\n}\n", DEV.index("airflow_env() {"))]
    out = {}
    for name, value in re.findall(r'^\s*export (AIRFLOW__\w+|AIRFLOW_CONN_\w+)=("[^\n]*"|\S+)', body, re.M):
        value = value.strip('"')
        m = re.fullmatch(rf"\$\{{{name}:-([^}}]*)\}}", value)
        out[name] = m.group(1) if m else value
    return out


@cache
def code_text() -> str:
    """Every Python source of the project that runs in the containers."""
    files = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "api").rglob("*.py"), *(ROOT / "dags").rglob("*.py")]
    return "\n".join(p.read_text() for p in files)


def airflow_options() -> dict[str, Any]:
    from airflow.configuration import conf

    return conf.configuration_description  # Airflow's and the installed providers' options


def locked_version(package: str) -> str:
    m = re.search(rf"^{re.escape(package)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert m, f"{package} is not pinned in requirements.txt"
    return m.group(1)


# ------------------------------------------------------------------------------------------------
# versions
# ------------------------------------------------------------------------------------------------
def test_the_image_is_the_locked_airflow_on_the_python_the_locks_are_compiled_for() -> None:
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base, "the Dockerfile starts from the official Airflow image"
    assert base.group(1) == locked_version("apache-airflow") == locked_version("apache-airflow-core")
    assert base.group(2) == "3.11" and "python3.11" in DEV  # ./dev prefers 3.11; the locks are for 3.11
    for service in own_services():
        assert SERVICES[service].get("build") == ".", f"{service} is built from this project's Dockerfile"
    header = COMPOSE_TEXT.split("\n\n", 1)[0]
    assert f"Airflow {base.group(1)}" in header


def test_the_header_names_the_images_postgres_and_redis_versions() -> None:
    header = COMPOSE_TEXT.split("\n\n", 1)[0]
    pg = SERVICES["postgres"]["image"].removeprefix("postgres:")
    redis = SERVICES["redis"]["image"].removeprefix("redis:")
    assert f"Postgres {pg}" in header and f"Redis {redis}" in header
    assert f"Postgres {pg}, Redis {redis}" in (ROOT / "README.md").read_text()


# ------------------------------------------------------------------------------------------------
# ports and URLs
# ------------------------------------------------------------------------------------------------
def test_published_ports_default_to_dev_up_s_and_the_containers_listen_where_they_are_reached() -> None:
    api_port, airflow_port = dev_default("MD_API_PORT"), dev_default("AIRFLOW_PORT")
    assert SERVICES["airflow-api-server"]["ports"] == [f"${{AIRFLOW_PORT:-{airflow_port}}}:8080"]
    assert command_of("airflow-api-server")[-2:] == ["--port", "8080"]
    assert env_of("airflow-api-server")["AIRFLOW__API__PORT"] == "8080"
    # the API: replicas on 8001 with no host port; the proxy publishes MD_API_PORT
    assert "ports" not in SERVICES["api"] and SERVICES["api"]["expose"] == ["8001"]
    cmd = command_of("api")
    assert cmd[:3] == ["python", "-m", "api.serve"]  # the launcher ./dev up runs (api/serve.py)
    assert cmd[cmd.index("--port") + 1] == "8001"
    assert SERVICES["api-proxy"]["ports"] == [f"${{MD_API_PORT:-{api_port}}}:8001"]
    nginx = (ROOT / "include" / "nginx" / "api.conf").read_text()
    assert re.search(r"^\s*listen 8001;", nginx, re.M)
    assert "set $api_upstream http://api:8001;" in nginx and "resolver 127.0.0.11" in nginx
    assert "./include/nginx/api.conf:/etc/nginx/conf.d/default.conf:ro" in SERVICES["api-proxy"]["volumes"]


def test_the_browser_gets_the_published_url_and_tasks_reach_the_execution_api_inside() -> None:
    env = env_of("airflow-scheduler")
    # what ./dev up sets: the URL the browser uses, on the published port
    base_url = env["AIRFLOW__API__BASE_URL"]
    assert with_defaults(base_url) == f"http://localhost:{dev_default('AIRFLOW_PORT')}"
    assert dev_airflow_exports()["AIRFLOW__API__BASE_URL"] == "http://localhost:$AIRFLOW_PORT"
    assert base_url == "http://localhost:${AIRFLOW_PORT:-8080}"
    # task processes (in the scheduler's or a worker's container): the api-server's service name
    assert "execution_api_server_url" in airflow_options()["core"]["options"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"


# ------------------------------------------------------------------------------------------------
# environment names and values
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", own_services())
def test_every_environment_name_is_an_airflow_option_or_read_by_the_code(service: str) -> None:
    options = airflow_options()
    for name in env_of(service):
        if name.startswith("AIRFLOW__"):
            section, _, key = name.removeprefix("AIRFLOW__").lower().partition("__")
            assert section in options, f"{service}: {name}: Airflow has no [{section}] section"
            free_form = section.endswith("_options")  # e.g. [celery_broker_transport_options]
            assert free_form or key in options[section]["options"], f"{service}: {name}: no [{section}] {key}"
        elif name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")) or name in IMAGE_ENV:
            continue
        else:
            assert re.search(rf"""["']{name}["']""", code_text()), f"{service}: nothing reads {name}"


def test_airflow_runs_with_the_settings_of_dev_up() -> None:
    exported = dev_airflow_exports()
    for service in airflow_services():
        env = env_of(service)
        missing = sorted(set(exported) - set(env))
        assert not missing, f"{service} lacks what ./dev up sets: {missing}"
        for name, value in exported.items():
            if "$" not in value:  # a literal (or a default) in ./dev: the same value in compose
                assert with_defaults(env[name]) == value, f"{service}: {name}"
        for name in ("AIRFLOW_CONN_MARKET_DATA_DB", "AIRFLOW_CONN_MARKET_DATA_REDIS"):
            assert yaml.safe_load(env[name])["host"] in SERVICES  # the compose service, as JSON


def test_the_celery_settings_are_those_of_dev_up_celery_workers() -> None:
    for service in airflow_services():
        env = env_of(service)
        want = celery_env(
            redis_url=env["REDIS_URL"],
            redis_prefix=env.get("MARKET_DATA_REDIS_PREFIX", "md:"),
            sql_alchemy_conn=env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            concurrency=int(with_defaults(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])),
        )
        # LocalExecutor unless .env asks for Celery (with the scale profile's workers)
        assert env["AIRFLOW__CORE__EXECUTOR"] == f"${{AIRFLOW__CORE__EXECUTOR:-{LOCAL}}}"
        want.pop("AIRFLOW__CORE__EXECUTOR")
        assert {k: with_defaults(env.get(k, "")) for k in want} == want, service
        # by default the scheduler's parallelism shared by the two workers the README starts
        parallelism = int(env["AIRFLOW__CORE__PARALLELISM"])
        assert want["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == str(worker_concurrency(parallelism, 2))
    assert env_of("airflow-scheduler")["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    # ./dev up starts its workers as executor.worker_args / worker_name say
    assert 'MD_WORKER_NAME="md-worker-$i"' in DEV and worker_name(1) == "md-worker-1"
    assert " ".join(worker_args(2, serve_logs=False)[:4]).replace("2", "$i") in DEV.replace('"', "")
    assert "--skip-serve-logs" in DEV and "python -m market_data.cli celery-env" in DEV


# ------------------------------------------------------------------------------------------------
# secrets
# ------------------------------------------------------------------------------------------------
def test_every_service_that_needs_a_secret_gets_it_from_the_environment() -> None:
    for service in airflow_services():
        env = env_of(service)
        for name in AIRFLOW_SECRETS:
            m = INTERPOLATION.fullmatch(env.get(name, ""))
            assert m and m.group(1) == name, f"{service}: {name} must come from ${{{name}...}}"
    for service in own_services():  # the API and every Airflow component (tasks share md-env)
        m = INTERPOLATION.fullmatch(env_of(service).get("MARKET_DATA_OPS_TOKEN", ""))
        assert m and m.group(1) == "MARKET_DATA_OPS_TOKEN" and m.group(2) == ":?", service
    # the JWT and session secrets are required (components that disagree reject each other)
    for name in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        m = INTERPOLATION.fullmatch(env_of("airflow-scheduler")[name])
        assert m and m.group(2) == ":?", name
    # ./dev generates the same three for its own Airflow
    for name in AIRFLOW_SECRETS:
        assert f'print(f"{name}=' in DEV


def test_env_example_lists_every_variable_compose_reads_with_compose_s_defaults() -> None:
    used: dict[str, tuple[str, str]] = {}
    for m in INTERPOLATION.finditer(COMPOSE_TEXT):
        used[m.group(1)] = (m.group(2) or "", m.group(3) or "")
    example = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE, re.M))
    assert set(used) == set(example), "docker-compose.yaml and .env.example name different variables"
    for name, (kind, default) in used.items():
        if kind == ":?":
            assert example[name] == "", f"{name} is required: .env.example leaves it to be filled in"
        elif kind == ":-":
            assert example[name] == default, f"{name}: .env.example says {example[name]}, compose {default}"
    for name in (*AIRFLOW_SECRETS, *API_SECRETS):
        assert name in example
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_postgres_gets_the_memory_the_storage_bench_measures_with() -> None:
    """Compose's Postgres defaults are the bench's rule (a quarter, three quarters) for 4 GB."""
    from tests.benchmarks.bench_storage import production_memory

    command = [with_defaults(part) for part in command_of("postgres")]
    assert command[0] == "postgres"
    settings = dict(arg.split("=", 1) for arg in command[2::2])
    assert command[1::2] == ["-c"] * len(settings)
    assert settings == production_memory(4 * 2**30)
    assert settings == {"shared_buffers": "1024MB", "effective_cache_size": "3072MB"}


# ------------------------------------------------------------------------------------------------
# scaling, health, restarts
# ------------------------------------------------------------------------------------------------
def test_celery_workers_and_api_replicas_scale() -> None:
    worker = SERVICES["airflow-worker"]
    assert worker["profiles"] == ["scale"]
    assert command_of("airflow-worker") == ["airflow", "celery", "worker"]
    assert 'inspect ping -d "celery@$${HOSTNAME}"' in " ".join(worker["healthcheck"]["test"])
    for name in ("airflow-worker", "api"):  # --scale needs no fixed name and no fixed host port
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name], name
    prometheus = yaml.safe_load((ROOT / "include" / "prometheus" / "prometheus.yml").read_text())
    (api_job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "market-data-api"]
    assert api_job["dns_sd_configs"][0]["names"] == ["api"]


@pytest.mark.parametrize("service", long_running())
def test_every_long_running_service_restarts(service: str) -> None:
    assert SERVICES[service].get("restart") in {"always", "unless-stopped", "on-failure"}


@pytest.mark.parametrize("service", [*airflow_services(), "api", "api-proxy", "postgres", "redis"])
def test_airflow_the_api_and_their_stores_have_healthchecks(service: str) -> None:
    if service == "airflow-init":
        assert SERVICES[service]["restart"] == "no"  # a one-shot: its exit status is its health
        return
    check = SERVICES[service].get("healthcheck")
    assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, service
    if command_of(service)[:2] == ["airflow", "scheduler"]:
        assert env_of(service)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
