"""Configuration: the example config is valid, every problem is reported with its path, and
secrets come from env vars and files without ever being printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.settings import MAX_REGISTRATIONS, ConfigError, load_settings

REPO = Path(__file__).parent.parent
EXAMPLE = REPO / "config" / "bridge.example.toml"

MINIMAL = """
[[accounts]]
name = "main"
domain = "127.0.0.1"
allowed_sources = ["127.0.0.1"]
[[providers]]
name = "sandbox"
type = "sandbox"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return info.value.problems


def test_example_config_is_valid():
    settings = load_settings(EXAMPLE)
    assert [p.type for p in settings.providers] == ["sandbox"]
    assert settings.numbers[0].number == "+15551230001"


def test_cli_check_config_prints_webhook_urls():
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "--config",
                          str(EXAMPLE)], capture_output=True, text=True, cwd=REPO, check=True)
    assert "sandbox: http://127.0.0.1:8080/webhooks/sandbox" in out.stdout


def test_config_path_from_environment(monkeypatch):
    out = subprocess.run([sys.executable, "-m", "bridge", "webhook-urls"], capture_output=True,
                         text=True, cwd=REPO, env={"SIP_SMS_BRIDGE_CONFIG": str(EXAMPLE),
                                                   "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sandbox\thttp://127.0.0.1:8080/webhooks/sandbox"


def test_every_problem_is_one_line_with_its_path(tmp_path):
    text = MINIMAL + """
[[providers]]
name = "tw"
type = "twilio"
account_sid = "ACnope"
auth_token = { env = "SURELY_UNSET_TOKEN_VAR" }
[web]
port = 70000
"""
    lines = problems(tmp_path, text)
    assert "web.port: Input should be less than or equal to 65535" in lines
    assert any(line.startswith("providers[tw].account_sid:") for line in lines)
    assert ("providers[tw].auth_token: environment variable SURELY_UNSET_TOKEN_VAR is not set"
            in lines)


def test_cli_reports_problems_and_exits_non_zero(tmp_path):
    path = write(tmp_path, MINIMAL + '[[numbers]]\nnumber = "12"\nprovider = "x"\n'
                 'deliver_to = ["1"]\n')
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "--config",
                          str(path)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "numbers[12].number:" in out.stderr


def test_cross_references_are_checked(tmp_path):
    text = MINIMAL + """
[[numbers]]
number = "+15551230001"
provider = "nope"
deliver_to = ["1001"]
[[extensions]]
extension = "1001"
send = "allow"
caller_ids = ["+15559999999"]
"""
    lines = problems(tmp_path, text)
    assert "numbers[+15551230001].provider: no provider named 'nope'" in lines
    assert "extensions[1001].caller_ids: +15559999999 is not one of the numbers" in lines


def test_too_many_registrations_is_a_clear_error_not_an_abort(tmp_path):
    accounts = "".join(
        f'[[accounts]]\nname = "r{i}"\nmode = "register"\ndomain = "d"\n'
        f'registrar = "sip:127.0.0.1"\nusername = "u"\npassword = "p"\n'
        for i in range(MAX_REGISTRATIONS + 1))
    lines = problems(tmp_path, accounts + '[[providers]]\nname = "s"\ntype = "sandbox"\n')
    assert any("at most 7 fit in one process" in line for line in lines)


def test_secrets_from_env_file_and_credential(tmp_path, monkeypatch):
    secret_file = tmp_path / "token"
    secret_file.write_text("from-a-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sip-sms-bridge_pbx").write_text("from-a-credential")  # as the unit loads it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("TW_TOKEN", "from-the-env")
    text = f"""
[[accounts]]
name = "main"
mode = "register"
domain = "127.0.0.1"
registrar = "sip:127.0.0.1"
username = "sms"
password = {{ credential = "pbx" }}
[[providers]]
name = "tw"
type = "twilio"
account_sid = "AC{'0' * 32}"
auth_token = {{ env = "TW_TOKEN" }}
api_key_sid = "SK{'0' * 32}"
api_key_secret = {{ file = "{secret_file}" }}
"""
    settings = load_settings(write(tmp_path, text))
    assert settings.accounts[0].password.get_secret_value() == "from-a-credential"
    tw = settings.providers[0]
    assert tw.auth_token.get_secret_value() == "from-the-env"
    assert tw.api_key_secret.get_secret_value() == "from-a-file"
    shown = repr(settings) + str(settings)
    for secret in ("from-a-credential", "from-the-env", "from-a-file"):
        assert secret not in shown


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SIP_SMS_BRIDGE_WEB__PORT", "9191")
    monkeypatch.setenv("SIP_SMS_BRIDGE_BRIDGE__STATE_DIR", "/var/lib/x")
    settings = load_settings(write(tmp_path, MINIMAL + '[web]\nport = 8000\nlisten = "::1"\n'))
    assert settings.web.port == 9191
    assert settings.web.listen == "::1"  # the rest of the section still comes from the file
    assert str(settings.bridge.state_dir) == "/var/lib/x"


def test_inline_secret_never_in_error_output(tmp_path):
    text = MINIMAL + """
[[providers]]
name = "tw"
type = "twilio"
account_sid = "bad"
auth_token = "inline-secret-value-123"
"""
    path = write(tmp_path, text)
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "--config",
                          str(path)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "inline-secret-value-123" not in out.stdout + out.stderr


@pytest.mark.parametrize("broken", ["[[accounts]\nname=", "accounts = 3\n", ""])
def test_broken_files_fail_cleanly(tmp_path, broken):
    path = write(tmp_path, broken)
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "--config",
                          str(path)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip()


def test_missing_file_fails_cleanly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "--config",
                          str(tmp_path / "nope.toml")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "cannot read" in out.stderr
