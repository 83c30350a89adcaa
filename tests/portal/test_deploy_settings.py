"""PORTAL_MODE=production must pass Django's deployment checklist (`check --deploy`).

The checks run in a fresh interpreter because settings are read once per process.
"""

import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# Set by the test harness itself (the browser tests need DJANGO_ALLOW_ASYNC_UNSAFE in this
# process), never by a deployment: keep them out of the production process under check.
_HARNESS_VARIABLES = {"DEBUG", "MAIL_BACKEND", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def _production_env(**overrides):
    env = {k: v for k, v in os.environ.items() if k not in _HARNESS_VARIABLES}
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    env.update(
        PORTAL_MODE="production",
        SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(50)),
        ALLOWED_HOSTS="portal.example.com",
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def _manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_mode_passes_check_deploy_at_warning_level():
    # given production mode with a strong secret key and a real host name
    env = _production_env()

    # when Django's deployment checklist runs, failing on warnings too
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    # then it reports no issue at all
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_mode_settings_are_hardened():
    # given production mode
    env = _production_env()

    # when the effective settings are printed
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.ALLOWED_HOSTS, s.MAILERS['default']['BACKEND'])",
        env=env,
    )

    # then debug is off, cookies are secure, HTTPS is enforced and mail goes out over SMTP
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "False True True True 31536000 ['portal.example.com'] django.core.mail.backends.smtp.EmailBackend"
    )


def test_production_mode_refuses_to_start_without_secret_key():
    # given production mode with no SECRET_KEY in the environment
    env = _production_env(SECRET_KEY=None)

    # when any management command starts
    result = _manage("check", env=env)

    # then it stops with a message naming the missing setting
    assert result.returncode != 0
    assert "SECRET_KEY must be set when PORTAL_MODE=production" in result.stderr
