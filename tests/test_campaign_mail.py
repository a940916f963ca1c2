"""Campaign e-mail: templates (sandbox, autoescape, errors that name field and line, plain
text, the visible unsubscribe link), the composed message (RFC 8058 headers) and the mailer
against a real SMTP server on loopback (aiosmtpd): sent / bounced / failed, reused
connections, STARTTLS with a certificate, AUTH, servers that misbehave."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.campaigns.mailer import Mailer, OutgoingMail
from gateway.campaigns.model import CampaignIn, CheckError, EmailTemplate, SendEmail
from gateway.campaigns.settings import MailSettings
from gateway.campaigns.templates import (
    SAMPLE_CONTEXT,
    check_campaign_templates,
    check_template,
    person_context,
    render,
)
from gateway.campaigns.unsubscribe import LinkSigner, compose
from gateway.store.models import Person
from tests.campaign_fixtures import SmtpSink, make_smtp_sink, smtp_sink  # noqa: F401

TLS_DIR = Path(__file__).parent / "data" / "smtp_tls"
URL = "https://crm.example.com/unsubscribe/TOKEN"
HOSTILE = '<script>alert("x")</script>'


def hostile_lead() -> Person:
    return Person(
        id=7,
        kind="lead",
        first_name=HOSTILE,
        last_name="O'Brien & Sons",
        company="<b>ACME</b>",
        country="ES",
        status="lost",
        lost_reason="no_budget",
        score=6.25,
    )


# -- templates -------------------------------------------------------------------------------


def test_a_hostile_name_stays_text_in_the_html_part_and_plain_in_the_text_part() -> None:
    t = EmailTemplate(
        subject="Hola {{ lead.first_name }}",
        html="<p>Hola {{ lead.first_name }} de {{ lead.company }}</p>",
    )
    out = render(t, person_context(hostile_lead(), "Ana"), unsubscribe_url=URL, language="es")
    assert "<script>" not in out.html and "<b>ACME</b>" not in out.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in out.html
    assert "&lt;b&gt;ACME&lt;/b&gt;" in out.html
    # the plain-text part is not HTML: the reader sees the name as it was typed
    assert HOSTILE in out.text and "<b>ACME</b>" in out.text
    assert out.subject == f"Hola {HOSTILE}"


def test_a_name_with_line_breaks_cannot_add_header_lines_to_the_subject() -> None:
    lead = hostile_lead()
    lead.first_name = "Eve\r\nBcc: everyone@example.com"
    t = EmailTemplate(subject="Hola {{ lead.first_name }}", html="<p>x</p>")
    out = render(t, person_context(lead, None), unsubscribe_url=URL)
    assert out.subject == "Hola Eve Bcc: everyone@example.com"
    assert "\n" not in out.subject and "\r" not in out.subject


def test_a_syntax_error_names_the_field_and_the_line() -> None:
    t = EmailTemplate(subject="Hola", html="<p>Hola</p>\n<p>{{ lead.first_name </p>\n")
    with pytest.raises(CheckError) as e:
        check_template(t, "steps[2].templates.es")
    assert e.value.path == "steps[2].templates.es.html"
    assert "line 2" in e.value.message
    t = EmailTemplate(subject="Hola {% if %}", html="<p>x</p>")
    with pytest.raises(CheckError) as e:
        check_template(t)
    assert e.value.path == "subject" and "line 1" in e.value.message
    t = EmailTemplate(subject="Hola", html="<p>x</p>", text="a\nb\n{% for x in %}")
    with pytest.raises(CheckError) as e:
        check_template(t)
    assert e.value.path == "text" and "line 3" in e.value.message


def test_a_misspelt_field_is_refused_with_its_line_and_the_known_fields() -> None:
    t = EmailTemplate(subject="Hi", html="<p>Hi</p>\n\n<p>{{ lead.frist_name }}</p>")
    with pytest.raises(CheckError) as e:
        check_template(t)
    assert e.value.path == "html"
    assert "line 3" in e.value.message and "frist_name" in e.value.message
    assert "lead.first_name" in e.value.message  # what they meant is listed


def test_the_sandbox_refuses_reaching_python_internals() -> None:
    t = EmailTemplate(subject="Hi", html="<p>{{ lead.name.__class__.__mro__ }}</p>")
    with pytest.raises(CheckError) as e:
        check_template(t)
    assert e.value.path == "html" and "not allowed" in e.value.message
    # and at send time it fails instead of leaking
    with pytest.raises(Exception, match="unsafe"):
        render(t, SAMPLE_CONTEXT, unsubscribe_url=URL)


def test_every_template_of_a_campaign_is_checked_with_its_path() -> None:
    good = EmailTemplate(subject="Hi {{ lead.first_name }}", html="<p>{{ owner.name }}</p>")
    bad = EmailTemplate(subject="Hi", html="<p>{% endif %}</p>")
    c = CampaignIn(
        name="x",
        steps=[SendEmail(templates={"es": good}), SendEmail(templates={"es": good, "en": bad})],
    )
    with pytest.raises(CheckError) as e:
        check_campaign_templates(c)
    assert e.value.path == "steps[1].templates.en.html"


def test_a_plain_text_part_is_always_there_derived_from_the_html_when_not_written() -> None:
    t = EmailTemplate(
        subject="Oferta",
        html="<html><head><style>p{color:red}</style></head><body><h1>Hola {{ lead.first_name"
        " }}</h1><p>Mira <a href='https://shop.example.com/x'>la oferta</a>.</p>"
        "<ul><li>uno</li><li>dos</li></ul></body></html>",
    )
    out = render(t, SAMPLE_CONTEXT, unsubscribe_url=URL, language="es")
    assert "Hola Lucía" in out.text
    assert "la oferta (https://shop.example.com/x)" in out.text
    assert "- uno" in out.text and "- dos" in out.text
    assert "color:red" not in out.text and "<" not in out.text.replace(URL, "")


def test_the_visible_unsubscribe_link_is_added_in_the_lead_s_language() -> None:
    t = EmailTemplate(subject="S", html="<html><body><p>Hola</p></body></html>")
    es = render(t, SAMPLE_CONTEXT, unsubscribe_url=URL, language="es")
    assert f'<a href="{URL}">Darse de baja</a>' in es.html
    assert es.html.index("Darse de baja") < es.html.index("</body>")  # inside the body
    assert f"Date de baja aquí: {URL}" in es.text
    en = render(t, SAMPLE_CONTEXT, unsubscribe_url=URL, language="en")
    assert f'<a href="{URL}">Unsubscribe</a>' in en.html and f"Unsubscribe here: {URL}" in en.text
    # a language the footer does not speak gets English rather than nothing
    fr = render(t, SAMPLE_CONTEXT, unsubscribe_url=URL, language="fr")
    assert "Unsubscribe" in fr.html


def test_a_template_that_shows_the_link_itself_gets_no_second_one() -> None:
    t = EmailTemplate(
        subject="S",
        html='<p>Hola</p><p><a href="{{ unsubscribe_url }}">Baja</a></p>',
        text="Hola\nBaja: {{ unsubscribe_url }}\n",
    )
    out = render(t, SAMPLE_CONTEXT, unsubscribe_url=URL, language="es")
    assert out.html.count(URL) == 1 and out.text.count(URL) == 1
    assert "Darse de baja" not in out.html


def test_the_open_pixel_goes_in_the_html_only() -> None:
    t = EmailTemplate(subject="S", html="<p>Hola</p>")
    out = render(
        t, SAMPLE_CONTEXT, unsubscribe_url=URL, open_pixel_url="https://crm.example.com/o/P"
    )
    assert '<img src="https://crm.example.com/o/P" width="1" height="1"' in out.html
    assert "/o/P" not in out.text


# -- composing -------------------------------------------------------------------------------

MAIL = MailSettings(
    host="127.0.0.1",
    from_address="ventas@centralita.example",
    from_name="Ventas Centralita",
    reply_to="equipo@centralita.example",
    timeout=5.0,
)
STEP = SendEmail(
    templates={
        "es": EmailTemplate(
            subject="Hola {{ lead.first_name }}", html="<p>Hola {{ lead.name }}</p>"
        ),
        "en": EmailTemplate(subject="Hi {{ lead.first_name }}", html="<p>Hi {{ lead.name }}</p>"),
    }
)


def composed(language: str = "es", *, to: str = "lucia@example.com") -> OutgoingMail:
    signer = LinkSigner(b"k" * 32, 365)
    return compose(
        STEP,
        person_context(hostile_lead(), "Ana", email=to),
        to=to,
        language=language,
        campaign_language="es",
        run_id=41,
        at=time.time(),
        signer=signer,
        mail=MAIL,
        public_url="https://crm.example.com/",
    )


def test_compose_adds_the_one_click_headers_and_the_same_link_in_the_body() -> None:
    mail = composed("en")
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    m = re.fullmatch(
        r"<(https://crm\.example\.com/unsubscribe/[A-Za-z0-9_-]{64})>",
        mail.headers["List-Unsubscribe"],
    )
    assert m, mail.headers["List-Unsubscribe"]
    assert m.group(1) in mail.text and m.group(1) in mail.html
    assert mail.subject.startswith("Hi ")  # the lead's language
    assert mail.headers["Reply-To"] == "equipo@centralita.example"
    assert re.fullmatch(r"<[0-9a-f]{32}@centralita\.example>", mail.message_id)
    # a language the step lacks: the campaign's
    assert composed("de").subject.startswith("Hola ")


# -- sending ---------------------------------------------------------------------------------


def _settings_dict(s: MailSettings) -> dict[str, object]:
    return {f: getattr(s, f) for f in s.__struct_fields__}


@pytest.fixture
async def mailer(smtp_sink: SmtpSink) -> AsyncIterator[Mailer]:  # noqa: F811
    m = Mailer(MailSettings(**{**_settings_dict(MAIL), "port": smtp_sink.port, "connections": 1}))  # type: ignore[arg-type]
    yield m
    await m.close()


async def test_a_sent_mail_arrives_as_multipart_alternative_with_every_header(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    mail = composed("es")
    result = await mailer.send(mail)
    assert result.status == "sent", result
    [d] = smtp_sink.deliveries
    assert d.mail_from == "ventas@centralita.example" and d.rcpt_tos == ["lucia@example.com"]
    msg = d.message
    assert msg.get_content_type() == "multipart/alternative"
    assert str(msg["From"]) == "Ventas Centralita <ventas@centralita.example>"
    assert str(msg["To"]) == "lucia@example.com"
    assert str(msg["Subject"]) == f"Hola {HOSTILE}"
    assert msg["Message-ID"] == mail.message_id
    assert msg["List-Unsubscribe"] == mail.headers["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Reply-To"] == "equipo@centralita.example"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    url = mail.headers["List-Unsubscribe"].strip("<>")
    assert url in text.get_content() and "Date de baja aquí" in text.get_content()
    assert "&lt;script&gt;" in html.get_content() and "<script>" not in html.get_content()
    assert all(b < 128 for b in d.raw)  # 7-bit clean: no relay needs 8BITMIME


def test_the_message_round_trips_through_a_mail_reader_byte_for_byte() -> None:
    from email import message_from_bytes, policy

    from gateway.campaigns.mailer import build_message

    text = ".a line a relay could take for the end of DATA\n" + "ñ" * 200 + "  \nlast= line\t"
    html = "<p>Señora Núñez</p>\n.<b>" + "x" * 300 + "</b>"
    subject = "Oferta para usted, Zoë Ñúñez-O'Hara: " + "muy larga " * 20
    mail = OutgoingMail(to="z@example.com", subject=subject, html=html, text=text)
    raw = build_message(mail, MailSettings(from_name="Ventas Señal"), at=1795346324.0)
    assert all(b < 128 for b in raw) and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert str(msg["Subject"]) == subject
    assert msg["From"].addresses[0].display_name == "Ventas Señal"
    assert msg["Date"].datetime.timestamp() == 1795346324.0
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    assert plain.get_content().replace("\r\n", "\n") == text
    assert rich.get_content().replace("\r\n", "\n") == html


async def test_a_5xx_for_the_recipient_is_a_bounce_and_a_4xx_a_failure_on_a_kept_connection(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    smtp_sink.fail_next(550)
    bounced = await mailer.send(composed(to="gone@example.com"))
    assert (bounced.status, bounced.code) == ("bounced", 550)
    assert "mailbox unavailable" in bounced.detail
    smtp_sink.fail_next(451)
    later = await mailer.send(composed(to="busy@example.com"))
    assert (later.status, later.code) == ("failed", 451)
    ok = await mailer.send(composed(to="fine@example.com"))
    assert ok.status == "sent"
    assert [d.rcpt_tos for d in smtp_sink.deliveries] == [["fine@example.com"]]
    assert smtp_sink.refused == [(550, "gone@example.com"), (451, "busy@example.com")]
    # one SMTP session for the three: a refusal resets the transaction, not the connection
    assert mailer.connections_opened == 1 and smtp_sink.connections == 1


async def test_connections_are_kept_open_and_used_in_parallel(smtp_sink: SmtpSink) -> None:  # noqa: F811
    m = Mailer(MailSettings(**{**_settings_dict(MAIL), "port": smtp_sink.port, "connections": 3}))  # type: ignore[arg-type]
    try:
        results = await asyncio.gather(
            *(m.send(composed(to=f"l{i}@example.com")) for i in range(30))
        )
    finally:
        await m.close()
    assert {r.status for r in results} == {"sent"}
    assert len(smtp_sink.messages) == 30
    assert 1 <= m.connections_opened <= 3 and smtp_sink.connections == m.connections_opened


async def test_a_server_that_dropped_the_kept_connection_gets_a_new_one_and_one_copy(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    smtp_sink.drop_after_next_message()
    assert (await mailer.send(composed(to="a@example.com"))).status == "sent"
    assert (await mailer.send(composed(to="b@example.com"))).status == "sent"
    assert [d.rcpt_tos for d in smtp_sink.deliveries] == [["a@example.com"], ["b@example.com"]]
    assert smtp_sink.connections == 2


async def test_a_server_that_offers_pipelining_gets_the_envelope_in_one_packet() -> None:
    """RFC 2920: MAIL, RCPT and DATA go together, and the replies are still matched one to one:
    a refused recipient is a bounce, the message is not sent, and the next one goes through on
    the same connection."""
    sink = make_smtp_sink(pipelining=True)
    m = Mailer(MailSettings(**{**_settings_dict(MAIL), "port": sink.port, "connections": 1}))  # type: ignore[arg-type]
    try:
        assert (await m.send(composed(to="a@example.com"))).status == "sent"
        sink.fail_next(550)
        bounced = await m.send(composed(to="gone@example.com"))
        assert (bounced.status, bounced.code) == ("bounced", 550)
        assert (await m.send(composed(to="b@example.com"))).status == "sent"
    finally:
        await m.close()
        sink.stop()
    assert [d.rcpt_tos for d in sink.deliveries] == [["a@example.com"], ["b@example.com"]]
    envelope = b"MAIL FROM:<ventas@centralita.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
    assert envelope in sink.chunks
    assert m.connections_opened == 1 and sink.connections == 1


async def test_without_pipelining_each_command_waits_for_its_answer(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    assert (await mailer.send(composed(to="a@example.com"))).status == "sent"
    commands = [c for c in smtp_sink.chunks if c.startswith((b"MAIL", b"RCPT", b"DATA"))]
    assert commands == [
        b"MAIL FROM:<ventas@centralita.example>\r\n",
        b"RCPT TO:<a@example.com>\r\n",
        b"DATA\r\n",
    ]


def _list_settings(sink: SmtpSink, connections: int, **kw: object) -> MailSettings:
    return MailSettings(  # type: ignore[arg-type]
        **{**_settings_dict(MAIL), "port": sink.port, "connections": connections, **kw}
    )


async def test_a_list_goes_out_on_kept_sessions_each_message_with_its_own_result(
    smtp_sink: SmtpSink,  # noqa: F811
) -> None:
    """send_many: one message after another on each session, a result for each in the list's
    order: a refused recipient is that message's bounce or failure only, an item with
    nothing to send (None) gets none, one whose message cannot be made fails alone."""
    smtp_sink.refuse("gone@example.com", 550)
    smtp_sink.refuse("busy@example.com", 451)
    names = [f"l{i}" for i in range(12)]
    names[3], names[7], names[9], names[10] = "gone", "busy", "skip", "broken"

    def make(name: str) -> OutgoingMail | None:
        if name == "skip":
            return None
        if name == "broken":
            raise ValueError("no template for this one")
        return composed(to=f"{name}@example.com")

    m = Mailer(_list_settings(smtp_sink, 2))
    try:
        results = await m.send_many(names, make)
    finally:
        await m.close()
    statuses = [None if r is None else r.status for r in results]
    expected: list[str | None] = ["sent"] * 12
    expected[3], expected[7], expected[9], expected[10] = "bounced", "failed", None, "failed"
    assert statuses == expected
    assert results[3] is not None and results[3].code == 550
    assert results[7] is not None and results[7].code == 451
    assert results[10] is not None and "no template" in results[10].detail
    delivered = sorted(d.rcpt_tos[0] for d in smtp_sink.deliveries)
    sent = sorted(f"{n}@example.com" for n, s in zip(names, statuses, strict=True) if s == "sent")
    assert delivered == sent  # each once
    assert 1 <= m.connections_opened <= 2 and smtp_sink.connections == m.connections_opened


async def test_with_pipelining_the_next_envelope_goes_with_the_content_before_it() -> None:
    """RFC 2920 3.1: message content may be the first command of a group, so MAIL, RCPT and
    DATA of the next message go in the packet that ends this one: one wait a message, not
    two. A refused recipient in the middle is still that message's bounce alone."""
    sink = make_smtp_sink(pipelining=True)
    sink.refuse("gone@example.com", 550)
    names = ["a", "b", "gone", "c", "d", "e"]
    m = Mailer(_list_settings(sink, 1))
    try:
        results = await m.send_many(names, lambda n: composed(to=f"{n}@example.com"))
    finally:
        await m.close()
        sink.stop()
    assert [r.status if r else None for r in results] == [
        "sent", "sent", "bounced", "sent", "sent", "sent"
    ]  # fmt: skip
    assert [d.rcpt_tos for d in sink.deliveries] == [
        [f"{n}@example.com"] for n in names if n != "gone"
    ]
    chained = [c for c in sink.chunks if b"\r\n.\r\nMAIL FROM:<ventas@centralita.example>\r\n" in c]
    assert chained, "no message's end went with the next envelope"
    assert all(c.endswith(b"DATA\r\n") for c in chained)
    assert m.connections_opened == 1 and sink.connections == 1


@pytest.mark.parametrize("pipelining", [False, True])
async def test_a_session_dropped_in_the_middle_of_a_list_loses_nothing_and_sends_nothing_twice(
    pipelining: bool,
) -> None:
    """The server closes the session after the first message: the message already built or
    already announced for that session goes out on a new one; what a result says sent is
    what the server has, once."""
    sink = make_smtp_sink(pipelining=pipelining)
    sink.drop_after_next_message()
    names = [f"n{i}" for i in range(6)]
    m = Mailer(_list_settings(sink, 1))
    try:
        results = await m.send_many(names, lambda n: composed(to=f"{n}@example.com"))
    finally:
        await m.close()
        sink.stop()
    delivered = [d.rcpt_tos[0] for d in sink.deliveries]
    assert len(delivered) == len(set(delivered))  # nothing twice
    sent = [
        f"{n}@example.com" for n, r in zip(names, results, strict=True) if r and r.status == "sent"
    ]
    assert sorted(delivered) == sorted(sent)
    assert len(sent) >= 5  # at most the one on the wire when the session ended is lost
    assert sink.connections == 2 and m.connections_opened == 2


async def test_a_server_that_stops_answering_mid_message_times_out_as_a_failure() -> None:
    """The greeting and EHLO come, then nothing: the message fails with a timeout after
    ``timeout`` seconds, it does not hang."""
    writers: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"220 mute.example ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250 mute.example\r\n")
        await reader.read()  # MAIL and the rest: no answer, ever

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    m = Mailer(MailSettings(host="127.0.0.1", port=port, timeout=0.3))
    try:
        started = time.monotonic()
        [result] = await asyncio.wait_for(m.send_many(["x"], lambda _: composed()), timeout=10)
        took = time.monotonic() - started
    finally:
        await m.close()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
    assert result is not None and result.status == "failed" and result.detail == "timeout"
    assert took < 5


async def test_a_refused_connection_is_a_failure_not_an_exception() -> None:
    port = _closed_port()
    m = Mailer(MailSettings(host="127.0.0.1", port=port, timeout=5.0))
    result = await m.send(composed())
    assert result.status == "failed"
    assert "refused" in result.detail.lower() or "connect" in result.detail.lower()
    await m.close()


async def test_a_server_that_never_answers_times_out_as_a_failure() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # says nothing, ever

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    m = Mailer(MailSettings(host="127.0.0.1", port=port, timeout=0.3))
    try:
        result = await asyncio.wait_for(m.send(composed()), timeout=10)
    finally:
        await m.close()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
    assert len(writers) == 1  # it did connect, and waited for a greeting that never came
    assert result.status == "failed" and "timeout" in result.detail.lower()


async def test_a_server_that_talks_nonsense_is_a_failure() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(nonsense, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    m = Mailer(MailSettings(host="127.0.0.1", port=port, timeout=2.0))
    try:
        result = await m.send(composed())
    finally:
        await m.close()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
    assert result.status == "failed"


async def test_a_malformed_address_fails_without_a_connection(mailer: Mailer) -> None:
    result = await mailer.send(composed(to="not an address"))
    assert result.status == "failed" and mailer.connections_opened == 0


async def test_a_domain_with_accents_is_sent_in_idna_to_any_server(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    result = await mailer.send(composed(to="lucia@ñandú.es"))
    assert result.status == "sent", result
    [d] = smtp_sink.deliveries
    assert d.rcpt_tos == ["lucia@xn--and-6ma2c.es"]
    assert str(d.message["To"]) == "lucia@xn--and-6ma2c.es"
    assert all(b < 128 for b in d.raw)


async def test_a_mailbox_with_accents_needs_a_server_that_takes_them(
    smtp_sink: SmtpSink,  # noqa: F811
    mailer: Mailer,
) -> None:
    """josé@correo.es cannot be written in ASCII: a server without SMTPUTF8 gets nothing (a
    failure, not a bounce: the address is fine), one with it gets the message as UTF-8."""
    result = await mailer.send(composed(to="josé@correo.es"))
    assert result.status == "failed" and "SMTPUTF8" in result.detail
    assert smtp_sink.deliveries == []
    assert (await mailer.send(composed())).status == "sent"  # the connection is still good

    sink = make_smtp_sink(smtputf8=True)
    m = Mailer(MailSettings(**{**_settings_dict(MAIL), "port": sink.port, "connections": 1}))  # type: ignore[arg-type]
    try:
        result = await m.send(composed(to="josé@correo.es"))
        assert result.status == "sent", result
        [d] = sink.deliveries
        assert d.rcpt_tos == ["josé@correo.es"]
        assert str(d.message["To"]) == "josé@correo.es"
        assert "josé@correo.es".encode() in d.raw
    finally:
        await m.close()
        sink.stop()


# -- TLS and AUTH ----------------------------------------------------------------------------


def server_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(TLS_DIR / "cert.pem", TLS_DIR / "key.pem")
    return ctx


def client_tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(TLS_DIR / "cert.pem"))


@pytest.fixture
def tls_sink() -> Iterator[SmtpSink]:
    sink = make_smtp_sink(
        tls_context=server_tls(), require_starttls=True, credentials=("relay", "s3cret")
    )
    yield sink
    sink.stop()


def tls_settings(sink: SmtpSink, **kw: object) -> MailSettings:
    base = {
        **_settings_dict(MAIL),
        "port": sink.port,
        "security": "starttls",
        "username": "relay",
        "password": "s3cret",
    }
    return MailSettings(**{**base, **kw})  # type: ignore[arg-type]


async def test_starttls_with_a_verified_certificate_then_auth(tls_sink: SmtpSink) -> None:
    m = Mailer(tls_settings(tls_sink), tls_context=client_tls())
    try:
        results = [await m.send(composed(to=f"t{i}@example.com")) for i in range(2)]
    finally:
        await m.close()
    assert [r.status for r in results] == ["sent", "sent"], results
    assert tls_sink.logins == ["relay"]  # one session, one login, two messages
    assert len(tls_sink.messages) == 2


async def test_starttls_refuses_a_certificate_it_cannot_verify(tls_sink: SmtpSink) -> None:
    m = Mailer(tls_settings(tls_sink))  # the system's CAs do not know this self-signed one
    result = await m.send(composed())
    await m.close()
    assert result.status == "failed" and "certificate" in result.detail.lower()
    assert tls_sink.messages == [] and tls_sink.logins == []


async def test_plain_smtp_to_a_server_that_requires_starttls_fails_and_sends_no_password(
    tls_sink: SmtpSink,
) -> None:
    m = Mailer(tls_settings(tls_sink, security="none"), tls_context=client_tls())
    result = await m.send(composed())
    await m.close()
    assert result.status == "failed" and tls_sink.messages == [] and tls_sink.logins == []


async def test_a_wrong_password_is_a_failure_that_names_the_server_answer(
    tls_sink: SmtpSink,
) -> None:
    m = Mailer(tls_settings(tls_sink, password="wrong"), tls_context=client_tls())
    result = await m.send(composed())
    await m.close()
    assert (result.status, result.code) == ("failed", 535)
    assert tls_sink.messages == []


async def test_implicit_tls_on_connect() -> None:
    sink = make_smtp_sink(tls_context=server_tls(), implicit_tls=True)
    m = Mailer(
        MailSettings(**{**_settings_dict(MAIL), "port": sink.port, "security": "tls"}),  # type: ignore[arg-type]
        tls_context=client_tls(),
    )
    try:
        result = await m.send(composed())
    finally:
        await m.close()
        sink.stop()
    assert result.status == "sent" and len(sink.messages) == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
