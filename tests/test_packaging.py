"""A regular install carries everything the product serves: the wheel holds the panel, and the
demo started from the wheel (not from the source tree) answers /health and serves /panel/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        cwd=out,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (found,) = out.glob("centralita-*.whl")
    return found


def test_the_wheel_ships_every_file_of_the_panel_and_the_status_page(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "web").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {"web/index.html", "web/panel/index.html", "web/static/status.js"} <= shipped
    assert shipped - names == set()
    assert {"dialplan/centralita.conf", "dialplan/manager.conf.example"} <= names
    assert any(n.startswith("gateway/store/migrations/") for n in names)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_demo_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the unpacked wheel first on the path, run from a folder without the sources
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site))
    port = _free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--port",
            str(port),
            "--state",
            "st",
            "--contacts",
            "20",
            "--duration",
            "60",
        ],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        health = 0
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                health = _get(f"{url}/health")
                break
            except OSError:
                time.sleep(0.2)
        assert demo.poll() is None, demo.communicate()[0][-2000:]
        assert health in (200, 503)  # up; 503 only while the simulated PBX logs in
        assert _get(f"{url}/panel/") == 200  # the sign-in page, after a redirect
        assert _get(f"{url}/panel/assets/app.js") == 200
        assert _get(f"{url}/static/status.js") == 200
    finally:
        demo.terminate()
        output = demo.communicate(timeout=30)[0]
    assert demo.returncode == 0, output[-2000:]
    assert "Traceback" not in output
