"""Leaving the mailings: signed links, the one function that opts an address out, and the
public page a lead reaches from any campaign e-mail (no sign-in).

A link's token is 48 bytes, base64url: purpose, the campaign step run the e-mail came from,
an expiry, the language the e-mail was written in, and an HMAC-SHA256 of all that under the
gateway's secret. It names no lead, and changing any character of it makes it invalid.

The page never unsubscribes on GET (mail scanners fetch every link of a message): GET shows a
button, POST unsubscribes. The same POST takes a mail client's RFC 8058 one-click request
(body ``List-Unsubscribe=One-Click``, no cookie, no Origin); the route is public in the access
table, so the panel's cross-site rule (which guards session cookies) does not apply to it.

Every unsubscribe, whichever way it comes, goes through :func:`unsubscribe`: it sets the one
suppression truth (``people.email_opt_out``, ``emails.opted_out``), writes the ``unsubscribes``
record and the audit log in the same transaction, logs a line with the address masked
(``l***@example.com``: the store keeps it in full, logs travel further) and publishes
:class:`LeadUnsubscribed` after the commit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import jinja2
from aiohttp import web

from gateway.access import acting
from gateway.bus import Bus
from gateway.campaigns.mailer import OutgoingMail, new_message_id
from gateway.campaigns.model import SendEmail
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.templates import choose_template, render
from gateway.store.db import Database
from gateway.store.events import LeadUnsubscribed

__all__ = [
    "ExpiredLink",
    "InvalidLink",
    "Link",
    "LinkSigner",
    "UnsubscribeResult",
    "compose",
    "mask_email",
    "setup_unsubscribe",
    "signing_secret",
    "unsubscribe",
]

log = logging.getLogger("gateway.campaigns.unsubscribe")

LANGUAGES = ("es", "en")

# -- signed links ---------------------------------------------------------------------------

_PURPOSES = {"unsubscribe": 1, "open": 2}
_HEADER = struct.Struct(">BBQI2s")  # purpose, format version, run id, expires (epoch s), lang
_MAC_BYTES = 32
_TOKEN_BYTES = _HEADER.size + _MAC_BYTES  # 48: a multiple of 3, so base64 has no spare bits
_FORMAT = 1
_DOMAIN = b"centralita/campaign-link\x00"


class InvalidLink(ValueError):
    """Not a token this gateway issued (truncated, altered, another purpose)."""


class ExpiredLink(ValueError):
    """A genuine token past its expiry."""


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid token says: the step run the e-mail came from, its language, its expiry."""

    run_id: int
    language: str
    expires_at: float


class LinkSigner:
    """Issues and checks the tokens of unsubscribe links and open pixels."""

    def __init__(self, secret: bytes, ttl_days: float) -> None:
        if len(secret) < 16:
            raise ValueError("the link signing secret must be at least 16 bytes")
        self._key = hmac.new(secret, _DOMAIN, hashlib.sha256).digest()
        # the HMAC with its key already taken in: each token copies it (a campaign signs two
        # tokens a mail, and keying a new HMAC costs more than the token itself)
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)
        self.ttl = ttl_days * 86400.0

    def _mac(self, header: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(header)
        return mac.digest()

    def issue(
        self, run_id: int, at: float, *, language: str = "", purpose: str = "unsubscribe"
    ) -> str:
        lang = language.encode("ascii") if len(language) == 2 and language.isalpha() else b"\0\0"
        expires = min(int(at + self.ttl), 2**32 - 1)
        header = _HEADER.pack(_PURPOSES[purpose], _FORMAT, run_id, expires, lang)
        return base64.urlsafe_b64encode(header + self._mac(header)).decode("ascii")

    def verify(self, token: str, now: float, *, purpose: str = "unsubscribe") -> Link:
        """The link's claims; :class:`InvalidLink` if it was not issued as is by this key for
        ``purpose``, :class:`ExpiredLink` if it was but its time is up."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise InvalidLink("not a link token") from None
        # one byte string, one spelling: refuse any other text that decodes to the same bytes
        if len(raw) != _TOKEN_BYTES or base64.urlsafe_b64encode(raw).decode() != token:
            raise InvalidLink("not a link token")
        header, mac = raw[: _HEADER.size], raw[_HEADER.size :]
        if not hmac.compare_digest(mac, self._mac(header)):
            raise InvalidLink("signature does not match")
        kind, version, run_id, expires, lang = _HEADER.unpack(header)
        if kind != _PURPOSES[purpose] or version != _FORMAT:
            raise InvalidLink("not a link of this kind")
        if now >= expires:
            raise ExpiredLink("link expired")
        language = lang.decode("ascii") if lang != b"\0\0" else ""
        return Link(run_id, language, float(expires))


_SECRET_NAME = "campaign_link_key"


async def signing_secret(db: Database, settings: CampaignSettings) -> bytes:
    """``campaigns.unsubscribe_secret`` from the config, else a key made once and kept in
    ``gateway_secrets`` (so links in mails already sent keep working after a restart)."""
    if settings.unsubscribe_secret:
        return settings.unsubscribe_secret.encode()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO gateway_secrets (name, value, created_at) VALUES (?, ?, ?)",
            (_SECRET_NAME, secrets.token_hex(32), db.clock()),
        )
        rows = list(
            await conn.execute_fetchall(
                "SELECT value FROM gateway_secrets WHERE name = ?", (_SECRET_NAME,)
            )
        )
    return bytes.fromhex(rows[0][0])


# -- the one way out ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    """What an unsubscribe did: ``changed`` is False when everything was opted out already."""

    person_id: int | None
    email: str  # the address the request was about ('' when unknown)
    changed: bool
    campaign_id: int | None = None
    language: str = ""


def mask_email(address: str) -> str:
    """``lucia@example.com`` -> ``l***@example.com``: enough to recognise, not to harvest."""
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


async def unsubscribe(
    db: Database,
    bus: Bus | None,
    *,
    at: float,
    method: str,
    run_id: int | None = None,
    person_id: int | None = None,
    email: str | None = None,
    actor: str | None = None,
    language: str = "",
) -> UnsubscribeResult:
    """Opt out of e-mail the person a campaign e-mail went to (``run_id``), or a person
    (``person_id``), or an address (``email``: every person who has it). The person's flag and
    all their addresses are set; an address named explicitly is set wherever it appears (a
    duplicate person must not keep receiving it). Safe to repeat: a second call changes
    nothing and records nothing."""
    who = acting()
    actor = actor or (who.actor if who is not None else f"unsubscribe:{method}")
    campaign_id: int | None = None
    address = (email or "").strip()
    low = address.lower()
    if run_id is not None:
        rows = list(
            await db.conn.execute_fetchall(
                "SELECT r.campaign_id, m.person_id FROM campaign_step_runs r"
                " JOIN campaign_members m ON m.id = r.member_id WHERE r.id = ?",
                (run_id,),
            )
        )
        if not rows:  # the lead was deleted since: nothing left to mail
            log.info("unsubscribe run=%d method=%s: no such run (person deleted?)", run_id, method)
            return UnsubscribeResult(None, "", False, None, language)
        campaign_id, person_id = rows[0][0], rows[0][1]
    async with db.transaction() as conn:
        people: dict[int, dict[str, Any]] = {}
        if person_id is not None:
            for r in await conn.execute_fetchall(
                "SELECT id, kind, email_opt_out, language FROM people WHERE id = ?", (person_id,)
            ):
                people[r["id"]] = dict(r)
        elif low:
            for r in await conn.execute_fetchall(
                "SELECT DISTINCT p.id, p.kind, p.email_opt_out, p.language FROM people p"
                " JOIN emails e ON e.person_id = p.id WHERE e.email_lower = ?",
                (low,),
            ):
                people[r["id"]] = dict(r)
        ids = list(people)
        marks = ",".join("?" * len(ids)) or "NULL"
        concerned: list[int | None] = [*ids] or [None]  # an address no person has: still recorded
        addresses = list(
            await conn.execute_fetchall(
                "SELECT e.id, e.person_id, e.email, e.email_lower, e.opted_out, e.bounced_at,"
                " p.kind FROM emails e JOIN people p ON p.id = e.person_id"
                f" WHERE e.person_id IN ({marks}) OR e.email_lower = ? ORDER BY e.id",
                [*ids, low],
            )
        )
        if not address and addresses:
            # the one campaign mail goes to: the first the lead may still be mailed at
            usable = [a for a in addresses if not a["opted_out"] and a["bounced_at"] is None]
            address = (usable or addresses)[0]["email"]
        kinds = {pid: p["kind"] for pid, p in people.items()}
        kinds.update({a["person_id"]: a["kind"] for a in addresses})
        changes: list[tuple[int, str]] = []  # (person id, audited field)
        for pid, p in people.items():
            if not p["email_opt_out"]:
                changes.append((pid, "email_opt_out"))
        for a in addresses:
            if not a["opted_out"]:
                changes.append((a["person_id"], f"emails[{a['email_lower']}].opted_out"))
        if not language and person_id in people:
            language = people[person_id]["language"] or ""
        if changes:
            if ids:
                await conn.execute(
                    f"UPDATE people SET email_opt_out = 1, updated_at = ? WHERE id IN ({marks})",
                    [at, *ids],
                )
            await conn.executemany(
                "UPDATE emails SET opted_out = 1 WHERE id = ?",
                [(a["id"],) for a in addresses if not a["opted_out"]],
            )
            await conn.executemany(
                "INSERT INTO audit_log (at, actor, record_kind, record_id, field, old_value,"
                " new_value) VALUES (?,?,?,?,?,?,?)",
                [
                    (at, actor, kinds.get(pid, "lead"), pid, f, json.dumps(False), json.dumps(True))
                    for pid, f in changes
                ],
            )
            # one record per person it concerns (an address alone may be several people's)
            await conn.executemany(
                "INSERT INTO unsubscribes (at, person_id, email, campaign_id, method, language)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(at, pid, address, campaign_id, method, language) for pid in concerned],
            )
            touched = {pid for pid, _ in changes}
            phones = await conn.execute_fetchall(
                f"SELECT e164 FROM phones WHERE person_id IN ({','.join('?' * len(touched))})",
                list(touched),
            )
            db.numbers_changed(r[0] for r in phones)  # caller cards show the opt-out
    changed = bool(changes)
    log.info(
        "unsubscribe person=%s campaign=%s run=%s method=%s address=%s changed=%s actor=%s",
        person_id,
        campaign_id,
        run_id,
        method,
        mask_email(address) if address else "-",
        changed,
        actor,
    )
    if changed and bus is not None:
        for target in concerned:  # every campaign of each person lets them go
            bus.publish(LeadUnsubscribed(target, address, at, method, campaign_id))
    first = person_id if person_id is not None else (ids[0] if ids else None)
    return UnsubscribeResult(first, address, changed, campaign_id, language)


# -- composing --------------------------------------------------------------------------------


def compose(
    step: SendEmail,
    context: dict[str, object],
    *,
    to: str,
    language: str,
    campaign_language: str,
    run_id: int,
    at: float,
    signer: LinkSigner,
    mail: MailSettings,
    public_url: str,
    track_opens: bool = True,
) -> OutgoingMail:
    """One lead's e-mail for one step run: the template in the lead's language (else the
    campaign's), the signed unsubscribe link (visible in the body and in the headers) and,
    when ``track_opens``, the open pixel."""
    lang, template = choose_template(step, language, campaign_language)
    base = public_url.rstrip("/")
    token = signer.issue(run_id, at, language=lang)
    unsubscribe_url = f"{base}/unsubscribe/{token}"
    pixel = f"{base}/o/{signer.issue(run_id, at, purpose='open')}" if track_opens else None
    rendered = render(
        template, context, unsubscribe_url=unsubscribe_url, open_pixel_url=pixel, language=lang
    )
    headers = {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Content-Language": lang,
    }
    if mail.reply_to:
        headers["Reply-To"] = mail.reply_to
    return OutgoingMail(
        to=to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        headers=headers,
        message_id=new_message_id(mail.from_address.rpartition("@")[2]),
    )


# -- the page -------------------------------------------------------------------------------

# the page's own catalog (server-rendered, not the panel's): every text in both languages
TEXTS: dict[str, dict[str, str]] = {
    "es": {
        "title": "Darse de baja",
        "confirm_heading": "¿Dejar de recibir nuestros correos?",
        "confirm_body": "Pulsa el botón y {sender} no volverá a enviar correos a {address}.",
        "confirm_button": "Darme de baja",
        "no_sign_in": "No hace falta iniciar sesión ni escribir nada más.",
        "done_heading": "Te has dado de baja",
        "done_body": "{sender} no volverá a enviar correos a {address}.",
        "done_again": "Ya estabas dado de baja: no volverás a recibir nuestros correos.",
        "done_mistake": "¿Ha sido un error? Escríbenos a {contact}.",
        "invalid_heading": "Este enlace no es válido",
        "invalid_body": "Puede que se haya copiado incompleto. Vuelve a abrirlo desde el "
        "correo, o escríbenos a {contact} y te daremos de baja.",
        "expired_heading": "Este enlace ha caducado",
        "expired_body": "Para darte de baja, usa el enlace de un correo más reciente o "
        "escríbenos a {contact}.",
        "address_unknown": "tu dirección",
    },
    "en": {
        "title": "Unsubscribe",
        "confirm_heading": "Stop receiving our e-mails?",
        "confirm_body": "Press the button and {sender} will send no more e-mails to {address}.",
        "confirm_button": "Unsubscribe me",
        "no_sign_in": "No need to sign in or type anything else.",
        "done_heading": "You are unsubscribed",
        "done_body": "{sender} will send no more e-mails to {address}.",
        "done_again": "You were already unsubscribed: you will not receive our e-mails.",
        "done_mistake": "Was this a mistake? Write to us at {contact}.",
        "invalid_heading": "This link is not valid",
        "invalid_body": "It may have been copied incompletely. Open it again from the "
        "e-mail, or write to {contact} and we will unsubscribe you.",
        "expired_heading": "This link has expired",
        "expired_body": "To unsubscribe, use the link in a more recent e-mail or write to us "
        "at {contact}.",
        "address_unknown": "your address",
    },
}

_PAGE = """<!doctype html>
<html lang="{{ lang }}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <meta name="robots" content="noindex">
  <title>{{ title }} · {{ sender }}</title>
  <link rel="stylesheet" href="/panel/assets/panel.css">
</head>
<body class="login-page">
  <main class="login-card unsubscribe-card" data-state="{{ state }}">
    <div class="brand">
      <span class="brand-mark" aria-hidden="true">{{ sender[:1] }}</span> {{ sender }}
    </div>
    {% for block in blocks %}
    <section lang="{{ block.lang }}">
      <h1>{{ block.heading }}</h1>
      {% for p in block.paragraphs %}<p>{{ p }}</p>{% endfor %}
      {% if block.button %}
      <form method="post" action="{{ action }}">
        <input type="hidden" name="confirm" value="1">
        <button type="submit" class="btn btn-primary btn-block">{{ block.button }}</button>
      </form>
      {% endif %}
    </section>
    {% endfor %}
  </main>
</body>
</html>
"""

_PAGE_ENV = jinja2.Environment(autoescape=True)
_PAGE_TEMPLATE = _PAGE_ENV.from_string(_PAGE)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def page_language(language: str) -> str:
    return language if language in LANGUAGES else "es"


def _page(
    state: str, langs: tuple[str, ...], status: int, *, sender: str, action: str = "", **fmt: str
) -> web.Response:
    blocks = []
    for lang in langs:
        t = TEXTS[lang]
        values = {**fmt, "sender": sender}
        if not values.get("address"):
            values["address"] = t["address_unknown"]
        paragraphs: list[str]
        button = ""
        if state == "confirm":
            heading = t["confirm_heading"]
            paragraphs = [t["confirm_body"].format(**values), t["no_sign_in"]]
            button = t["confirm_button"]
        elif state == "done":
            heading = t["done_heading"]
            paragraphs = [t["done_body"].format(**values), t["done_mistake"].format(**values)]
        elif state == "again":
            heading = t["done_heading"]
            paragraphs = [t["done_again"], t["done_mistake"].format(**values)]
        else:  # invalid | expired
            heading = t[f"{state}_heading"]
            paragraphs = [t[f"{state}_body"].format(**values)]
        blocks.append(
            {"lang": lang, "heading": heading, "paragraphs": paragraphs, "button": button}
        )
    body = _PAGE_TEMPLATE.render(
        lang=langs[0],
        title=TEXTS[langs[0]]["title"],
        sender=sender,
        state=state,
        blocks=blocks,
        action=action,
    )
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Robots-Tag"] = "noindex"
    return resp


class UnsubscribeHost(Protocol):
    """What the routes read of the gateway (``gateway.app.Gateway``)."""

    @property
    def db(self) -> Database | None: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def cfg(self) -> Any: ...


# a 1x1 transparent GIF
PIXEL = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_MAX_BODY = 4096


class UnsubscribePages:
    """The public routes: ``/unsubscribe/{token}`` (GET page, POST unsubscribe) and
    ``/o/{token}`` (the open pixel)."""

    def __init__(self, gw: UnsubscribeHost) -> None:
        self.gw = gw
        self._signer: LinkSigner | None = None
        self._lock = asyncio.Lock()

    async def signer(self) -> LinkSigner:
        async with self._lock:
            if self._signer is None:
                assert self.gw.db is not None
                settings: CampaignSettings = self.gw.cfg.campaigns
                secret = await signing_secret(self.gw.db, settings)
                self._signer = LinkSigner(secret, settings.unsubscribe_days)
            return self._signer

    def _mail(self) -> MailSettings:
        mail: MailSettings = self.gw.cfg.mail
        return mail

    def _error(self, e: InvalidLink | ExpiredLink) -> web.Response:
        mail = self._mail()
        contact = mail.reply_to or mail.from_address
        state, status = ("expired", 410) if isinstance(e, ExpiredLink) else ("invalid", 400)
        return _page(state, LANGUAGES, status, sender=mail.from_name, contact=contact)

    async def _address(self, run_id: int) -> tuple[str, str]:
        """(masked address the e-mails go to, the person's language) for the page."""
        assert self.gw.db is not None
        rows = list(
            await self.gw.db.conn.execute_fetchall(
                "SELECT p.language, e.email FROM campaign_step_runs r"
                " JOIN campaign_members m ON m.id = r.member_id"
                " JOIN people p ON p.id = m.person_id"
                " LEFT JOIN emails e ON e.person_id = p.id"
                " WHERE r.id = ? ORDER BY e.opted_out, e.bounced_at IS NOT NULL, e.id LIMIT 1",
                (run_id,),
            )
        )
        if not rows:
            return "", ""
        language, address = rows[0][0] or "", rows[0][1] or ""
        return (mask_email(address) if address else ""), language

    async def page(self, request: web.Request) -> web.Response:
        """GET: the confirm page with its button; never unsubscribes (scanners fetch links)."""
        try:
            link = (await self.signer()).verify(request.match_info["token"], self.gw.clock())
        except (InvalidLink, ExpiredLink) as e:
            return self._error(e)
        address, person_lang = await self._address(link.run_id)
        lang = page_language(link.language or person_lang)
        mail = self._mail()
        return _page(
            "confirm",
            (lang,),
            200,
            sender=mail.from_name,
            address=address,
            action=request.path,
            contact=mail.reply_to or mail.from_address,
        )

    async def post(self, request: web.Request) -> web.Response:
        """POST: the page's button or a mail client's one-click request; no session needed."""
        try:
            link = (await self.signer()).verify(request.match_info["token"], self.gw.clock())
        except (InvalidLink, ExpiredLink) as e:
            return self._error(e)
        raw = await request.content.read(_MAX_BODY)
        form = parse_qs(raw.decode("utf-8", "replace"))
        one_click = "One-Click" in form.get("List-Unsubscribe", [])
        assert self.gw.db is not None
        result = await unsubscribe(
            self.gw.db,
            self.gw.bus,
            at=self.gw.clock(),
            method="one_click" if one_click else "page",
            run_id=link.run_id,
            language=link.language,
        )
        lang = page_language(link.language or result.language)
        mail = self._mail()
        return _page(
            "done" if result.changed else "again",
            (lang,),
            200,
            sender=mail.from_name,
            address=mask_email(result.email) if result.email else "",
            contact=mail.reply_to or mail.from_address,
        )

    async def pixel(self, request: web.Request) -> web.Response:
        """The open pixel: marks the e-mail opened once; always answers the image."""
        try:
            link = (await self.signer()).verify(
                request.match_info["token"], self.gw.clock(), purpose="open"
            )
        except (InvalidLink, ExpiredLink):
            link = None
        if link is not None:
            assert self.gw.db is not None
            async with self.gw.db.transaction() as conn:
                await conn.execute(
                    "UPDATE campaign_step_runs SET opened_at = ?"
                    " WHERE id = ? AND opened_at IS NULL",
                    (self.gw.clock(), link.run_id),
                )
        resp = web.Response(body=PIXEL, content_type="image/gif")
        resp.headers["Cache-Control"] = "no-store, private"
        return resp


UNSUBSCRIBE_PAGES: web.AppKey[UnsubscribePages] = web.AppKey("unsubscribe_pages", UnsubscribePages)


def setup_unsubscribe(app: web.Application, gw: UnsubscribeHost) -> None:
    """Register the public unsubscribe page, its one-click POST and the open pixel."""
    pages = UnsubscribePages(gw)
    app[UNSUBSCRIBE_PAGES] = pages
    app.router.add_get("/unsubscribe/{token}", pages.page)
    app.router.add_post("/unsubscribe/{token}", pages.post)
    app.router.add_get("/o/{token}", pages.pixel)
