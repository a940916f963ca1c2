"""Config loading: every mistake gets a message naming the key, what was expected and found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = "pbx:\n  - name: main\n    username: gateway\n    secret: s3cret\n"


def _error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return str(info.value)


def test_minimal_config_gets_sane_defaults() -> None:
    cfg = parse_config(MINIMAL, env={})
    pbx = cfg.pbx[0]
    assert (pbx.host, pbx.port, pbx.auth) == ("127.0.0.1", 5038, "md5")
    assert cfg.http.port == 8080
    assert cfg.lookup.budget_ms == 300
    assert "s3cret" not in repr(pbx)


def test_secret_from_environment() -> None:
    text = MINIMAL.replace("s3cret", "${AMI_SECRET}")
    assert parse_config(text, env={"AMI_SECRET": "from-env"}).pbx[0].secret == "from-env"
    assert parse_config(text.replace("}", ":-fallback}"), env={}).pbx[0].secret == "fallback"
    msg = _error(text)
    assert msg.startswith("pbx[0].secret:")
    assert "AMI_SECRET" in msg and "unset" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "    port: abc\n", "pbx[0].port: expected int, found 'abc' (str)"),
        (
            MINIMAL + "    prot: 1\n",
            "pbx[0].prot: unknown key 'prot'; expected one of: name, host, port",
        ),
        ("pbx:\n  - name: main\n", "pbx[0].username: required key is missing"),
        (MINIMAL + "    auth: rsa\n", "pbx[0].auth: expected one of 'plain', 'md5', found 'rsa'"),
        (MINIMAL + "    port: 70000\n", "pbx[0].port: expected a TCP port 1-65535, found 70000"),
        ("http: {port: 0}\n", "http.port: expected a TCP port 1-65535, found 0"),
        (
            "log: {level: LOUD}\n",
            "log.level: expected one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', found 'LOUD'",
        ),
        ("lookup: {default_region: XX}\n", "lookup.default_region: expected an ISO 3166 region"),
        ("tracking: {agent_channels: ['x(']}\n", "tracking.agent_channels[0]: expected a regex"),
        ("tracking: {agent_channels: ['PJSIP/(\\d+)']}\n", "named group (?P<ext>...)"),
        ("pbxx: []\n", "pbxx: unknown key 'pbxx'; expected one of: pbx, http"),
        (MINIMAL + MINIMAL[5:], "pbx[1].name: expected a unique name, found 'main' twice"),
        ("- just\n- a list\n", "expected a mapping of sections at the top, found list"),
        ("pbx: [\n", "is not valid YAML at line 2"),
        (
            MINIMAL + "    reconnect: {initial: 5, maximum: 1}\n",
            "pbx[0].reconnect: expected 0 < initial <= maximum",
        ),
    ],
)
def test_each_mistake_names_key_expectation_and_finding(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_shipped_example_configs_validate() -> None:
    env = {"AMI_SECRET": "x", "CENTRALITA_API_TOKEN": "y"}
    for path in sorted((ROOT / "config").glob("*.yaml")):
        text = path.read_text()
        parse_config(text, env=env | _env_names(text))


def _env_names(text: str) -> dict[str, str]:
    import re

    return {name: "x" * 24 for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "    port: abc\n")
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)], capture_output=True, text=True
    )
    assert ko.returncode == 2
    assert "pbx[0].port: expected int, found 'abc'" in ko.stderr
