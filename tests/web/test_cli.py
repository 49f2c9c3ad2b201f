"""The ``web`` command as a user runs it (``python -m dyrygent.web -A proj``), and the
credential helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dyrygent.errors import ConfigurationError
from dyrygent.web.security import Auth, CsrfTokens, hash_password, verify_password
from tests.harness import ROOT, WORKER_APP_DIR, free_port, wait_for


def command_env(env: dict, **extra: str) -> dict:
    return {
        **os.environ,
        **env,
        **extra,
        "PYTHONPATH": os.pathsep.join([str(WORKER_APP_DIR), str(ROOT)]),
    }


def test_refuses_a_public_address_without_auth(env):
    # When asked to listen on 0.0.0.0 with no credentials configured
    done = subprocess.run(
        [sys.executable, "-m", "dyrygent.web", "-A", "workerapp", "--host", "0.0.0.0"],
        env=command_env(env),
        cwd=str(WORKER_APP_DIR),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it exits non-zero, saying how to configure authentication
    assert done.returncode == 1
    assert "refusing to serve the dashboard on 0.0.0.0" in done.stderr
    assert "DYRYGENT_WEB_TOKEN" in done.stderr and "hash-password" in done.stderr


def test_as_a_celery_subcommand_it_takes_the_app_from_celery(app):
    from types import SimpleNamespace

    from click.testing import CliRunner

    from dyrygent.web.cli import web

    # When invoked as `celery -A proj dyrygent web` does (the app in the context object),
    # on a public address; Then it refuses, so it found the app and checked the bind first
    result = CliRunner().invoke(web, ["--host", "0.0.0.0"], obj=SimpleNamespace(app=app))
    assert result.exit_code == 1
    assert "refusing to serve the dashboard on 0.0.0.0" in result.output


def test_serves_the_api_and_the_page(env, worker):
    import httpx

    # Given the command running on a free port, with a bearer token from the environment
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dyrygent.web", "-A", "workerapp", "--port", str(port)],
        env=command_env(env, DYRYGENT_WEB_TOKEN="cli-token"),
        cwd=str(WORKER_APP_DIR),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/api/ping").status_code == 200, 30, "the server")
        # Then the API needs the token, and the page and its assets are served
        assert httpx.get(url + "/api/workflows").status_code == 401
        auth = {"Authorization": "Bearer cli-token"}
        assert httpx.get(url + "/api/workflows", headers=auth).status_code == 200
        page = httpx.get(url + "/workflows/some-id", headers=auth)
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "DyGraph" in httpx.get(url + "/static/graph.js").text
    finally:
        proc.terminate()
        proc.wait(20)


def test_passwords_are_hashed_with_scrypt_and_verified():
    # Given a hashed password
    stored = hash_password("correct horse")
    # Then only the password verifies, and a malformed hash never does
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("correct horse", "scrypt$bad")
    assert not verify_password("correct horse", "md5$x$y$z$a$b")


def test_users_come_from_config_or_environment():
    stored = hash_password("pw")
    # From the environment, when the config has none
    auth = Auth.from_config(
        {}, {"DYRYGENT_WEB_USERS": f"alice:{stored}", "DYRYGENT_WEB_TOKEN": "t"}
    )
    assert auth.users == {"alice": stored} and auth.token == "t" and auth.enabled
    # The config wins
    auth = Auth.from_config({"dyrygent_web_users": {"bob": stored}}, {})
    assert list(auth.users) == ["bob"] and auth.token is None
    # A malformed entry is refused with the expected form
    with pytest.raises(ConfigurationError, match="'alice' is not user:<hash>"):
        Auth.from_config({}, {"DYRYGENT_WEB_USERS": "alice"})
    assert not Auth.from_config({}, {}).enabled


def test_csrf_tokens_are_ours_and_match_the_cookie():
    tokens = CsrfTokens()
    token = tokens.new()
    assert tokens.valid(token, token)
    assert not tokens.valid(token, tokens.new())
    assert not tokens.valid(None, token)
    forged = token.split(".")[0] + ".00"
    assert not tokens.valid(forged, forged)
    assert not CsrfTokens().valid(token, token)


def test_the_core_package_never_imports_the_web_stack():
    # When dyrygent and its engine are imported; Then neither Starlette nor uvicorn is
    code = (
        "import sys, dyrygent, dyrygent.workflow, dyrygent.engine.processor, dyrygent.web; "
        "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_hash_password_prints_a_hash_that_verifies():
    # When hash-password is given the same password twice (no terminal: read from stdin)
    done = subprocess.run(
        [sys.executable, "-m", "dyrygent.web", "hash-password"],
        input="pw\npw\n",
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    # Then it prints a scrypt hash of it
    stored = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0 and verify_password("pw", stored)
    # And two different passwords are refused
    differ = subprocess.run(
        [sys.executable, "-m", "dyrygent.web", "hash-password"],
        input="pw\nother\n",
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert differ.returncode == 1 and "the passwords differ" in differ.stderr
