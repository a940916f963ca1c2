"""Leaving the mailings: the signed link (any changed character fails, it expires), the public
page (GET never unsubscribes; the button and the RFC 8058 one-click POST do, with no session
and no Origin), the page in the lead's language, bad links in both languages, the one
suppression truth, the record (unsubscribes, audit log, a log line without the full address),
the LeadUnsubscribed event, and the open pixel. A real gateway app, a real SQLite file, the
link taken from a message a real SMTP server received."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from gateway.app import Gateway, create_app
from gateway.campaigns.mailer import Mailer
from gateway.campaigns.model import CampaignIn, EmailTemplate, SendEmail
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.templates import person_context
from gateway.campaigns.unsubscribe import (
    ExpiredLink,
    InvalidLink,
    LinkSigner,
    compose,
    signing_secret,
    unsubscribe,
)
from gateway.config import GatewayConfig, HttpSettings, RecordingSettings, StoreSettings
from gateway.store.db import Database
from gateway.store.events import LeadUnsubscribed
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401

T0 = 1_800_000_000.0  # a Friday in January 2027, 09:20 in Madrid
DAY = 86400.0
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# -- the signed link -------------------------------------------------------------------------


def test_a_link_says_which_run_and_language_and_expires() -> None:
    signer = LinkSigner(b"s" * 32, ttl_days=30)
    token = signer.issue(123456, T0, language="en")
    link = signer.verify(token, T0 + 29 * DAY)
    assert (link.run_id, link.language, link.expires_at) == (123456, "en", T0 + 30 * DAY)
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", token)
    with pytest.raises(ExpiredLink):
        signer.verify(token, T0 + 30 * DAY)


def test_changing_any_character_of_a_link_makes_it_invalid() -> None:
    signer = LinkSigner(b"s" * 32, ttl_days=30)
    token = signer.issue(7, T0, language="es")
    for i, ch in enumerate(token):
        for other in (B64URL[(B64URL.index(ch) + 1) % 64], B64URL[(B64URL.index(ch) + 33) % 64]):
            with pytest.raises(InvalidLink):
                signer.verify(token[:i] + other + token[i + 1 :], T0)
    for bad in (token[:-1], token + "A", token + "=", "", "../../etc", token.upper()):
        with pytest.raises(InvalidLink):
            signer.verify(bad, T0)


def test_a_link_made_with_another_key_or_for_the_pixel_is_no_unsubscribe_link() -> None:
    signer = LinkSigner(b"s" * 32, ttl_days=30)
    with pytest.raises(InvalidLink):
        signer.verify(LinkSigner(b"t" * 32, 30).issue(7, T0), T0)
    pixel = signer.issue(7, T0, purpose="open")
    with pytest.raises(InvalidLink):
        signer.verify(pixel, T0)
    assert signer.verify(pixel, T0, purpose="open").run_id == 7


async def test_the_signing_key_is_made_once_and_kept_unless_the_config_names_one(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "s.db")
    first = await signing_secret(db, CampaignSettings())
    assert len(first) == 32 and await signing_secret(db, CampaignSettings()) == first
    await db.close()
    db = await Database.open(tmp_path / "s.db")
    assert await signing_secret(db, CampaignSettings()) == first  # links survive a restart
    named = CampaignSettings(unsubscribe_secret="from-the-config-file-0123456789")
    assert await signing_secret(db, named) == b"from-the-config-file-0123456789"
    await db.close()


# -- a world: the gateway app, a lead, a campaign e-mail step run ------------------------------


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    gw: Gateway
    server: Any
    clock: Clock
    sink: SmtpSink
    events: list[LeadUnsubscribed] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.server.host}:{self.server.port}{path}"

    async def client(self) -> aiohttp.ClientSession:
        """No cookie jar, no Origin: what a mail client's one-click POST looks like."""
        s = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.sessions.append(s)
        return s

    async def one(self, sql: str, *args: Any) -> Any:
        assert self.gw.db is not None
        rows = list(await self.gw.db.conn.execute_fetchall(sql, args))
        return rows[0][0] if rows else None

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        assert self.gw.db is not None
        return [tuple(r) for r in await self.gw.db.conn.execute_fetchall(sql, args)]


MAIL = MailSettings(
    host="127.0.0.1",
    from_address="ventas@centralita.example",
    from_name="Ventas Centralita",
    reply_to="equipo@centralita.example",
    timeout=5.0,
)
STEP = SendEmail(
    templates={
        "es": EmailTemplate(subject="Hola {{ lead.first_name }}", html="<p>Hola</p>"),
        "en": EmailTemplate(subject="Hi {{ lead.first_name }}", html="<p>Hi</p>"),
    }
)


@pytest.fixture
async def world(
    aiohttp_server: Any,
    tmp_path: Path,
    smtp_sink: SmtpSink,  # noqa: F811
) -> AsyncIterator[World]:
    clock = Clock()
    cfg = GatewayConfig(
        store=StoreSettings(path=str(tmp_path / "centralita.db")),
        recordings=RecordingSettings(directory=str(tmp_path)),
        http=HttpSettings(public_url="https://crm.example.com"),
        # the scheduler stays off: these tests drive the links; links must work regardless
        campaigns=CampaignSettings(enabled=False, unsubscribe_days=30),
        mail=msgspec.structs.replace(MAIL, port=smtp_sink.port),
    )
    gw = Gateway(cfg, clock=clock)
    app = await create_app(cfg, gw)
    server = await aiohttp_server(app)
    w = World(gw, server, clock, smtp_sink)
    gw.bus.subscribe(LeadUnsubscribed, w.events.append)
    yield w
    for s in w.sessions:
        await s.close()


async def lead_with_run(
    w: World, name: str, email: str, *, language: str = "", extra_email: str = ""
) -> tuple[int, int]:
    """A lead, a campaign and the step run of an e-mail sent to them: (person id, run id)."""
    assert w.gw.db is not None
    data: dict[str, Any] = {
        "name": name,
        "emails": [email] + ([extra_email] if extra_email else []),
    }
    data["phones"] = ["+34 600 111 222"]
    person = (await PersonRepository(w.gw.db).create(PersonType.LEAD, data)).person
    definition = CampaignIn(name="Nurture", steps=[STEP])
    async with w.gw.db.transaction() as conn:
        await conn.execute("UPDATE people SET language = ? WHERE id = ?", (language, person.id))
        cur = await conn.execute(
            "INSERT INTO campaigns (name, status, definition, created_at, updated_at)"
            " VALUES ('Nurture', 'running', ?, ?, ?)",
            (msgspec.json.encode(definition).decode(), T0, T0),
        )
        campaign_id = cur.lastrowid
        cur = await conn.execute(
            "INSERT INTO campaign_members (campaign_id, person_id, entered_at, due_at)"
            " VALUES (?, ?, ?, ?)",
            (campaign_id, person.id, T0, T0),
        )
        member_id = cur.lastrowid
        cur = await conn.execute(
            "INSERT INTO campaign_step_runs (member_id, campaign_id, step, kind, status, at)"
            " VALUES (?, ?, 0, 'email', 'sending', ?)",
            (member_id, campaign_id, T0),
        )
        assert cur.lastrowid is not None
        return person.id, cur.lastrowid


async def mail_for(w: World, person_id: int, run_id: int, language: str) -> EmailMessage:
    """Compose and send the run's e-mail through the real SMTP sink; the message received."""
    assert w.gw.db is not None
    person = await PersonRepository(w.gw.db).get(person_id)
    assert person is not None
    signer = LinkSigner(await signing_secret(w.gw.db, w.gw.cfg.campaigns), 30)
    out = compose(
        STEP,
        person_context(person, None, email=person.emails[0].email),
        to=person.emails[0].email,
        language=language,
        campaign_language="es",
        run_id=run_id,
        at=w.clock(),
        signer=signer,
        mail=w.gw.cfg.mail,
        public_url=w.gw.public_url,
    )
    mailer = Mailer(w.gw.cfg.mail)
    try:
        assert (await mailer.send(out)).status == "sent"
    finally:
        await mailer.close()
    return w.sink.messages[-1]


def links_of(msg: EmailMessage) -> tuple[str, str]:
    """(List-Unsubscribe URL, the visible link in the plain-text part)."""
    header = str(msg["List-Unsubscribe"]).strip("<>")
    text = msg.get_body(("plain",))
    assert isinstance(text, EmailMessage)
    found = re.search(r"https://crm\.example\.com/unsubscribe/\S+", text.get_content())
    assert found, text.get_content()
    return header, found.group(0)


def local(w: World, url: str) -> str:
    return w.url(url.removeprefix(w.gw.public_url))


# -- the page and the POSTs ------------------------------------------------------------------


async def test_the_one_click_post_unsubscribes_without_session_or_origin_and_says_so_in_spanish(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    pid, run = await lead_with_run(w, "Lucía García", "lucia.garcia@example.com", language="es")
    msg = await mail_for(w, pid, run, "es")
    header, visible = links_of(msg)
    assert header == visible  # the body's link and the one-click header are the same
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    s = await w.client()
    caplog.set_level(logging.INFO, "gateway.campaigns.unsubscribe")
    async with s.post(
        local(w, header),
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 200, await r.text()
        page = await r.text()
        assert "Origin" not in r.request_info.headers and "Cookie" not in r.request_info.headers
    assert "Te has dado de baja" in page and 'lang="es"' in page
    assert "l***@example.com" in page and "lucia.garcia@example.com" not in page
    # the one suppression truth, set on the person and on the address
    assert await w.one("SELECT email_opt_out FROM people WHERE id = ?", pid) == 1
    assert await w.rows("SELECT email, opted_out FROM emails WHERE person_id = ?", pid) == [
        ("lucia.garcia@example.com", 1)
    ]
    # the record the law asks for, the audit trail and the event
    assert await w.rows("SELECT person_id, email, method, language, at FROM unsubscribes") == [
        (pid, "lucia.garcia@example.com", "one_click", "es", T0)
    ]
    audit = await w.rows("SELECT actor, record_id, field, new_value FROM audit_log ORDER BY id")
    assert audit == [
        ("unsubscribe:one_click", pid, "email_opt_out", "true"),
        ("unsubscribe:one_click", pid, "emails[lucia.garcia@example.com].opted_out", "true"),
    ]
    campaign_id = await w.one("SELECT campaign_id FROM campaign_step_runs WHERE id = ?", run)
    assert w.events == [
        LeadUnsubscribed(pid, "lucia.garcia@example.com", T0, "one_click", campaign_id)
    ]
    # logged, with the address masked: the store keeps it in full, logs travel further
    lines = [r.getMessage() for r in caplog.records if "unsubscribe person=" in r.getMessage()]
    assert len(lines) == 1 and "l***@example.com" in lines[0] and "method=one_click" in lines[0]
    assert "lucia.garcia" not in caplog.text


async def test_get_only_shows_the_button_and_the_button_unsubscribes_in_english(
    world: World,
) -> None:
    w = world
    pid, run = await lead_with_run(w, "Lucy Gray", "lucy@example.org", language="en")
    _, visible = links_of(await mail_for(w, pid, run, "en"))
    s = await w.client()
    for _ in range(3):  # a mail scanner fetching the link, twice, then the person
        async with s.get(local(w, visible)) as r:
            assert r.status == 200
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["Cache-Control"] == "no-store"
    assert await w.one("SELECT email_opt_out FROM people WHERE id = ?", pid) == 0
    assert await w.one("SELECT count(*) FROM unsubscribes") == 0 and w.events == []
    assert 'lang="en"' in page and "Stop receiving our e-mails?" in page
    assert "Unsubscribe me" in page and "l***@example.org" in page
    assert "script-src" not in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    assert "<script" not in page
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action is not None
    async with s.post(w.url(action.group(1)), data={"confirm": "1"}) as r:
        assert r.status == 200
        done = await r.text()
    assert "You are unsubscribed" in done and 'lang="en"' in done
    assert await w.one("SELECT method FROM unsubscribes WHERE person_id = ?", pid) == "page"
    # pressing again (or a second one-click) changes and records nothing more
    async with s.post(w.url(action.group(1)), data="List-Unsubscribe=One-Click") as r:
        assert r.status == 200
        assert "You were already unsubscribed" in await r.text()
    assert await w.one("SELECT count(*) FROM unsubscribes") == 1 and len(w.events) == 1


async def test_a_lead_s_hostile_name_never_reaches_the_page_as_markup(world: World) -> None:
    w = world
    pid, run = await lead_with_run(w, '<img src=x onerror=alert(1)> "Bad"', "bad@example.com")
    _, visible = links_of(await mail_for(w, pid, run, "es"))
    s = await w.client()
    async with s.get(local(w, visible)) as r:
        page = await r.text()
    assert "<img src=x" not in page and "onerror" not in page  # the page names no lead at all


async def test_a_tampered_or_expired_link_shows_a_clear_page_in_both_languages_and_changes_nothing(
    world: World,
) -> None:
    w = world
    pid, run = await lead_with_run(w, "Lucía García", "lucia@example.com", language="es")
    _, visible = links_of(await mail_for(w, pid, run, "es"))
    token = visible.rsplit("/", 1)[1]
    s = await w.client()
    for i in (0, 10, 30, 63):  # run id, expiry, signature, last character
        ch = B64URL[(B64URL.index(token[i]) + 1) % 64]
        bad = f"/unsubscribe/{token[:i]}{ch}{token[i + 1 :]}"
        for method in ("GET", "POST"):
            async with s.request(method, w.url(bad), data="List-Unsubscribe=One-Click") as r:
                assert r.status == 400, (i, method)
                page = await r.text()
            assert "Este enlace no es válido" in page and "This link is not valid" in page
            assert "equipo@centralita.example" in page  # whom to write to instead
    w.clock.now = T0 + 30 * DAY + 1
    for method in ("GET", "POST"):
        async with s.request(method, local(w, visible), data="List-Unsubscribe=One-Click") as r:
            assert r.status == 410
            page = await r.text()
        assert "Este enlace ha caducado" in page and "This link has expired" in page
    assert await w.one("SELECT email_opt_out FROM people WHERE id = ?", pid) == 0
    assert await w.one("SELECT opted_out FROM emails WHERE person_id = ?", pid) == 0
    assert await w.one("SELECT count(*) FROM unsubscribes") == 0
    assert await w.one("SELECT count(*) FROM audit_log") == 0 and w.events == []


async def test_the_panel_s_cross_site_rule_still_guards_session_changes(world: World) -> None:
    # the public unsubscribe POST does not open the panel: a cookie-less, Origin-less POST to
    # a panel route is still refused before any handler runs
    s = await world.client()
    async with s.post(world.url("/panel/api/presence"), json={"status": "available"}) as r:
        assert r.status == 401


# -- the one function, for agents and the API ------------------------------------------------


async def test_an_address_unsubscribed_by_an_agent_is_out_for_every_person_who_has_it(
    world: World,
) -> None:
    w = world
    assert w.gw.db is not None
    pid, _ = await lead_with_run(w, "Ana Uno", "shared@example.com", extra_email="ana@example.com")
    other = await PersonRepository(w.gw.db).create(PersonType.LEAD, {"name": "Ana Dos"})
    async with w.gw.db.transaction() as conn:  # a duplicate person with the same address
        await conn.execute(
            "INSERT INTO emails (person_id, email, email_lower) VALUES (?, ?, ?)",
            (other.person.id, "Shared@Example.com", "shared@example.com"),
        )
    result = await unsubscribe(
        w.gw.db, w.gw.bus, at=T0, method="agent", email="Shared@Example.com", actor="user:ana"
    )
    assert result.changed
    assert await w.rows("SELECT person_id, email_lower, opted_out FROM emails ORDER BY id") == [
        (pid, "shared@example.com", 1),
        (pid, "ana@example.com", 1),
        (other.person.id, "shared@example.com", 1),
    ]
    assert await w.rows("SELECT email_opt_out FROM people ORDER BY id") == [(1,), (1,)]
    actors = {r[0] for r in await w.rows("SELECT actor FROM audit_log")}
    assert actors == {"user:ana"}
    # one record and one event per person: each one's campaigns let them go
    assert await w.rows("SELECT person_id, email, method FROM unsubscribes ORDER BY id") == [
        (pid, "Shared@Example.com", "agent"),
        (other.person.id, "Shared@Example.com", "agent"),
    ]
    assert [e.person_id for e in w.events] == [pid, other.person.id]
    again = await unsubscribe(w.gw.db, w.gw.bus, at=T0 + 5, method="api", person_id=pid)
    assert not again.changed and await w.one("SELECT count(*) FROM unsubscribes") == 2
    assert len(w.events) == 2


# -- the open pixel --------------------------------------------------------------------------


async def test_the_open_pixel_marks_the_run_opened_once_and_is_always_an_image(
    world: World,
) -> None:
    w = world
    pid, run = await lead_with_run(w, "Lucía García", "lucia@example.com")
    msg = await mail_for(w, pid, run, "es")
    html = msg.get_body(("html",))
    assert isinstance(html, EmailMessage)
    found = re.search(
        r'<img src="https://crm\.example\.com(/o/[A-Za-z0-9_-]{64})"', html.get_content()
    )
    assert found, html.get_content()
    s = await w.client()
    w.clock.now = T0 + 3600
    for _ in range(2):
        async with s.get(w.url(found.group(1))) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/gif"
            assert (await r.read()).startswith(b"GIF89a")
        w.clock.now += 60
    assert await w.one("SELECT opened_at FROM campaign_step_runs WHERE id = ?", run) == T0 + 3600
    # an unsubscribe token is not a pixel token: it opens nothing (and unsubscribes nothing)
    header, _ = links_of(msg)
    async with s.get(w.url("/o/" + header.rsplit("/", 1)[1])) as r:
        assert r.status == 200
    async with s.get(w.url("/o/not-a-token")) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/gif"
    assert await w.one("SELECT email_opt_out FROM people WHERE id = ?", pid) == 0


def test_the_page_speaks_both_languages_everywhere() -> None:
    from gateway.campaigns.unsubscribe import TEXTS

    assert set(TEXTS) == {"es", "en"} and set(TEXTS["es"]) == set(TEXTS["en"])
    for lang in TEXTS:
        assert all(v.strip() for v in TEXTS[lang].values())
