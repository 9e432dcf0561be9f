"""The production settings of deploy/example.env pass Django's deployment checks, ours included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = ROOT / "deploy" / "example.env"


def example_env() -> dict[str, str]:
    values = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _check_deploy(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    # Only what a production host would have: the example file, a database we can open here, no broker
    # or storage calls (the checks never connect to them).
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(tmp_path)),
           **example_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "sonoalign.settings", "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_example_env_is_production():
    env = example_env()
    assert env["DEBUG"] == "false" and "IMPORT_PSEUDONYM_KEY" in env and env["ALLOWED_HOSTS"]


def test_security_checks_are_clean_with_the_example_env(tmp_path):
    result = _check_deploy(tmp_path, "--tag", "security")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_every_deployment_check_is_clean_with_the_example_env(tmp_path):
    result = _check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
