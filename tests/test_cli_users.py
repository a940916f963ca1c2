"""``centralita user list|add|disable|enable|delete|password`` as an operator types them, with a
config whose PBX secret comes from an environment variable that this shell does not set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = "lighthouse marmalade tuba"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A production-like config: the AMI and CRM secrets are ${VARS}, none of them set."""
    for var in ("AMI_SECRET", "SUITE_PASSWORD", "CRM_TOKEN", "CENTRALITA_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"""
pbx:
  - name: main
    host: 192.0.2.10
    username: centralita
    secret: ${{AMI_SECRET}}
store:
  path: {tmp_path / "centralita.db"}
api:
  tokens:
    - name: crm
      token: ${{CRM_TOKEN}}
"""
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def add(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    *argv: str,
    password: str = GOOD,
) -> tuple[int, str, str]:
    monkeypatch.setenv("CENTRALITA_PASSWORD", password)
    try:
        return run(capsys, "user", "add", *argv, "-c", config)
    finally:
        monkeypatch.delenv("CENTRALITA_PASSWORD")


def test_an_operator_manages_users_without_the_pbx_secret(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert add(capsys, monkeypatch, config, "root", "--role", "admin")[0] == 0
    code, out, err = add(
        capsys, monkeypatch, config, "ana", "--extension", "101", "--name", "Ana García"
    )
    assert (code, err) == (0, "")
    assert out.strip() == "user ana (agent) created; extensions: 101"

    code, out, _ = run(capsys, "user", "list", "-c", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "ROLE", "EXTENSIONS", "STATE", "SESSIONS", "NAME"]
    assert lines[1].split() == ["ana", "agent", "101", "enabled", "0", "Ana", "García"]
    assert lines[2].split() == ["root", "admin", "-", "enabled", "0"]

    code, out, _ = run(capsys, "user", "disable", "ana", "-c", config)
    assert (code, out.strip()) == (0, "user ana disabled; 0 session(s) ended")
    assert "disabled" in run(capsys, "user", "list", "-c", config)[1].splitlines()[1]
    code, out, _ = run(capsys, "user", "enable", "ana", "-c", config)
    assert (code, out.strip()) == (0, "user ana enabled")

    monkeypatch.setenv("CENTRALITA_PASSWORD", "another fine evening")
    code, out, _ = run(capsys, "user", "password", "ana", "-c", config)
    assert (code, out.strip()) == (0, "password of ana set; 0 session(s) ended")
    monkeypatch.delenv("CENTRALITA_PASSWORD")

    code, out, _ = run(capsys, "user", "delete", "ana", "-c", config)
    assert (code, out.strip()) == (0, "user ana deleted; 0 session(s) ended")
    assert "ana" not in run(capsys, "user", "list", "-c", config)[1]


@pytest.mark.parametrize(
    ("argv", "password", "code"),
    [
        (("bruno",), "password123", "password_common"),
        (("bruno", "--name", "Bruno Silva"), "Bruno.Silva-2024", "password_like_name"),
        (("bruno",), "bruno-1234567", "password_like_name"),
        (("bruno",), "Kq7-zR2", "password_too_short"),
        (("Bad Name",), GOOD, "invalid_username"),
        (("bruno", "--extension", "10;1"), GOOD, "invalid_extension"),
    ],
)
def test_add_refuses_with_one_line_that_says_why(
    config: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    password: str,
    code: str,
) -> None:
    status, out, err = add(capsys, monkeypatch, config, *argv, password=password)
    assert status == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and err.rstrip().endswith(f"[{code}]")
    assert password not in err  # the refused password is never echoed
    assert run(capsys, "user", "list", "-c", config)[1].startswith("no users yet")


def test_errors_for_missing_users_and_the_last_admin(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for action in ("disable", "enable", "delete"):
        code, _, err = run(capsys, "user", action, "nobody", "-c", config)
        assert (code, err) == (1, "error: user 'nobody' does not exist [user_not_found]\n")
    assert add(capsys, monkeypatch, config, "root", "--role", "admin")[0] == 0
    code, _, err = add(capsys, monkeypatch, config, "root")
    assert code == 1 and err.rstrip().endswith("[username_taken]")
    for action in ("disable", "delete"):
        code, _, err = run(capsys, "user", action, "root", "-c", config)
        assert code == 1 and "only enabled admin" in err and err.rstrip().endswith("[last_admin]")
    add(capsys, monkeypatch, config, "rosa", "--role", "admin")
    assert run(capsys, "user", "disable", "root", "-c", config)[0] == 0


def test_the_command_runs_user_commands_without_ami_secret(config: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "CENTRALITA_PASSWORD": GOOD}  # no AMI_SECRET
    cmd = [sys.executable, "-m", "gateway"]  # this tree's, whatever is installed
    done = subprocess.run(
        [*cmd, "user", "add", "carla", "-c", config], capture_output=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert GOOD.encode() not in done.stdout + done.stderr
    listing = subprocess.run(
        [*cmd, "user", "list", "-c", config], capture_output=True, env=env, cwd=ROOT
    )
    assert b"carla" in listing.stdout


def test_other_store_commands_do_not_need_the_pbx_secret_but_run_does(
    config: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("first_name,last_name,phone\nLuis,Pardo,+34 912 345 678\n")
    assert run(capsys, "import", str(people), "-c", config)[0] == 0
    code, out, _ = run(capsys, "export", "-c", config)
    assert code == 0 and "Pardo" in out
    trace = ROOT / "tests" / "data" / "ami-traces" / "inbound_answered.ami"
    assert run(capsys, "replay", str(trace), "-c", config)[0] == 0
    code, _, err = run(capsys, "check-config", config)
    assert code == 2 and "AMI_SECRET" in err  # what connects to the PBX still needs it
