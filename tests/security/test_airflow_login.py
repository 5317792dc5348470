"""The Airflow UI login: documented, and its admin password generated per installation.

`./dev` (and docker-compose) run Airflow's simple auth manager with one user, `admin`, whose
role is admin (`AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin` is user:role, not a
password). Nothing may set a password file, a fixed password or "everyone is admin"; the
auth manager then generates a random password on the first start, which `./dev up` prints
from the generated file. The README says how to log in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV = (ROOT / "dev").read_text()
COMPOSE = (ROOT / "docker-compose.yaml").read_text()
README = (ROOT / "README.md").read_text()
ROLES = {"admin", "op", "user", "viewer"}
FORBIDDEN = (
    "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "SIMPLE_AUTH_MANAGER_ALL_ADMINS",
    "SIMPLE_AUTH_MANAGER_PASSWORD",
)


@pytest.mark.parametrize("name,text", [("./dev", DEV), ("docker-compose.yaml", COMPOSE)])
def test_nothing_fixes_the_airflow_password(name: str, text: str) -> None:
    for setting in FORBIDDEN:
        assert setting not in text, f"{name} sets {setting}"
    users = re.findall(r"SIMPLE_AUTH_MANAGER_USERS[=:]\s*\"?([^\"\s]+)", text)
    assert users, f"{name} does not configure the simple auth manager's users"
    for value in users:
        for entry in value.split(","):
            username, _, role = entry.partition(":")
            assert username and role in ROLES, f"{name}: {entry!r} is not user:role"
    assert not re.search(r"(?i)airflow[\w]*passw(or)?d\w*\s*[=:]\s*\S", text), (
        f"{name} sets an Airflow password"
    )


def test_dev_up_prints_the_generated_password_and_the_readme_documents_the_login() -> None:
    assert "simple_auth_manager_passwords.json.generated" in DEV
    assert re.search(r"login: admin / \$pw", DEV)
    assert (
        "simple auth manager" in README.lower() and "simple_auth_manager_passwords.json.generated" in README
    )
    assert re.search(r"(?i)user `admin`.*password generated\s+per installation", README, re.S)


def test_airflow_generates_a_different_random_password_per_installation(tmp_path: Path, monkeypatch) -> None:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    passwords = []
    for install in ("one", "two"):
        file = tmp_path / install / "simple_auth_manager_passwords.json.generated"
        file.parent.mkdir()
        monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(file))
        SimpleAuthManager().init()
        passwords.append(json.loads(file.read_text())["admin"])
        SimpleAuthManager().init()  # a restart keeps it
        assert json.loads(file.read_text())["admin"] == passwords[-1]
    assert passwords[0] != passwords[1]
    assert all(len(p) >= 16 and p != "admin" for p in passwords)
