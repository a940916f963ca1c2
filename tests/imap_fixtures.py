"""A real IMAP server for tests: Debian's Dovecot, started in the foreground with a private
config (loopback, free ports, a passwd-file user, maildir, its state in a temporary folder)
and stopped after the test.

``from tests.imap_fixtures import dovecot  # noqa: F401`` gives a test a running server with
one user (:data:`USER` / :data:`PASSWORD`): plain IMAP with STARTTLS on ``port``, IMAPS on
``tls_port``, both with the certificate of ``tests/data/smtp_tls`` (CN/SAN 127.0.0.1).

Dovecot must run as root (it switches to the mail user itself), as CI does. Without it
(``apt-get install dovecot-imapd``; ``.ci/run`` installs it) the tests are skipped on a
developer's machine, and FAIL in CI (``CI=true`` or ``CENTRALITA_REQUIRE_BROWSER=1``, which
``.ci/run`` sets so that nothing is skipped quietly there).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_servers import end_process, need, read_log

TLS_DIR = Path(__file__).parent / "data" / "smtp_tls"
USER = "respuestas"
PASSWORD = "s3cret-imap"
MAIL_UID = 65534  # nobody: Dovecot refuses to give mail to root
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("CENTRALITA_REQUIRE_BROWSER") == "1"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing() -> str:
    """Why Dovecot cannot run here ('' when it can)."""
    if not Path(DOVECOT).exists():
        return "Dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "Dovecot's tests run as root (it switches to the mail user itself)"
    return ""


def client_tls() -> ssl.SSLContext:
    """What a client must trust to talk TLS to this server."""
    return ssl.create_default_context(cafile=str(TLS_DIR / "cert.pem"))


class Dovecot:
    """A running Dovecot and helpers to put messages in its user's mailbox and read flags."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        # not under pytest's tmp_path: its parent is 0700, and Dovecot's login processes run
        # as dovenull, which must reach base_dir
        self.root = Path(tempfile.mkdtemp(prefix="centralita-dovecot-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self.tls_port = _free_port()
        self.log = self.root / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        r = self.root
        for d in ("base", "state"):
            (r / d).mkdir()
        mail = r / "mail"
        mail.mkdir()
        os.chown(mail, MAIL_UID, MAIL_UID)
        (r / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::{mail}/{USER}\n", encoding="utf-8"
        )
        conf = r / "dovecot.conf"
        conf.write_text(
            f"""
protocols = imap
listen = 127.0.0.1
base_dir = {r}/base
state_dir = {r}/state
instance_name = centralita-test-{self.port}
default_login_user = dovenull
default_internal_user = root
log_path = {self.log}
ssl = yes
ssl_cert = <{TLS_DIR}/cert.pem
ssl_key = <{TLS_DIR}/key.pem
# the plain (no TLS) test logs in without TLS; loopback only
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/passwd
}}
userdb {{
  driver = passwd-file
  args = {r}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""",
            encoding="utf-8",
        )
        return conf

    def start(self) -> None:
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"Dovecot exited at start-up: {err}{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not answer on {self.port}: {self.log_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        end_process(proc)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return read_log(self.log)

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP session as the test user (plain, loopback)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            conn.login(USER, PASSWORD)
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def deliver(self, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> int:
        """Put a message in the mailbox (IMAP APPEND); returns its UID."""
        with self.client() as c:
            if mailbox != "INBOX":
                c.create(mailbox)
            typ, data = c.append(mailbox, flags or None, None, raw.replace(b"\n", b"\r\n"))
            assert typ == "OK", data
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert m is not None, data
            return int(m.group(1))

    def flags(self, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """{uid: flags} of every message in the mailbox (\\Recent left out)."""
        with self.client() as c:
            typ, _ = c.select(mailbox, readonly=True)
            assert typ == "OK"
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
            out: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item) or re.search(
                    rb"FLAGS \(([^)]*)\) UID (\d+)", item
                )
                if m is None:
                    continue
                uid, names = (
                    (m.group(1), m.group(2)) if m.group(1).isdigit() else (m.group(2), m.group(1))
                )
                out[int(uid)] = {f for f in names.decode().split() if f != "\\Recent"}
            return out


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A running Dovecot with one user (USER / PASSWORD), stopped and removed afterwards."""
    need(_missing(), required=REQUIRED, what="IMAP")
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.stop()
