"""The daily and weekly report e-mail (gateway/reports/mailing.py): which days it covers, when
it falls due, and what reaches a real SMTP server on loopback from a real store: the figures
and tables with bars in each reader's language, hostile names escaped, a plain-text twin, the
reports as an XLSX attachment; and, across restarts, every report sent once: late when it fell
due while the gateway was down, never twice."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import date, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from gateway.campaigns.settings import MailSettings, ReportRecipient
from gateway.config import ConfigErrors, GatewayConfig, config_from_dict
from gateway.panel.settings import PanelSettings
from gateway.reports import mailing
from gateway.reports.locale import wording
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401  (pytest fixture)
from tests.postgres_fixtures import open_store
from tests.test_reports_charts import AGENTS, DISPOSITIONS, HEAT, HOSTILE, SUMMARY

STORE_ENGINES = ("sqlite", "postgresql")

MADRID = ZoneInfo("Europe/Madrid")


def _at(y: int, m: int, d: int, hour: int, minute: int = 0) -> float:
    return datetime(y, m, d, hour, minute, tzinfo=MADRID).timestamp()


def test_daily_covers_yesterday_and_weekly_the_last_monday_to_sunday() -> None:
    assert mailing.period_range("daily", date(2026, 12, 1)) == (
        date(2026, 11, 30),
        date(2026, 11, 30),
    )
    # any day of the week after: Monday 23 to Sunday 29 November
    for today in (date(2026, 11, 30), date(2026, 12, 3), date(2026, 12, 6)):
        assert mailing.period_range("weekly", today) == (date(2026, 11, 23), date(2026, 11, 29))


def test_reports_fall_due_after_the_morning_hour_in_the_panels_time_zone() -> None:
    assert mailing.due(_at(2026, 11, 30, 6), MADRID) == []  # Monday, before 07:00
    monday = mailing.due(_at(2026, 11, 30, 7), MADRID)
    assert [(p, s) for p, s, _ in monday] == [
        ("daily", date(2026, 11, 29)),
        ("weekly", date(2026, 11, 23)),
    ]
    tuesday = mailing.due(_at(2026, 12, 1, 9), MADRID)
    assert [(p, s) for p, s, _ in tuesday] == [("daily", date(2026, 11, 30))]


def _bundle(period: mailing.Period = "weekly") -> mailing.ReportBundle:
    heat = HEAT if period == "weekly" else None  # as gather() does: the daily has no heatmap
    return mailing.ReportBundle(
        period=period, summary=SUMMARY, agents=AGENTS, dispositions=DISPOSITIONS, heatmap=heat
    )


def test_the_mail_has_figures_tables_with_bars_and_a_plain_text_twin() -> None:
    mail = mailing.compose(
        _bundle(), wording("es"), "jefa@example.com", panel_url="https://pbx.example.com"
    )
    assert mail.subject == "Informe semanal de llamadas: del 30 nov al 6 dic"
    assert "Tasa de respuesta" in mail.html and "80,6\u00a0%" in mail.html
    assert "Lucía Martín" in mail.html and "Interesado" in mail.html
    assert 'bgcolor="#1d4ed8"' in mail.html  # a bar Outlook draws too
    assert "<svg" not in mail.html  # most mail clients show no SVG
    assert "&lt;script&gt;" in mail.html and "<script>" not in mail.html
    assert "https://pbx.example.com/panel/#reports" in mail.html
    assert "lunes 10:00" in mail.text  # the worst hour of the week
    assert "Recibidas: 1354" in mail.text and HOSTILE.replace("\x01", "")[:20] in mail.text
    en = mailing.compose(_bundle("daily"), wording("en"), "boss@example.com")
    assert en.subject == "Daily call report: Monday, Nov 30, 2026"
    assert "Offered: 1,354" in en.text and "Hours with the most" not in en.text  # daily: no heatmap


def test_recipients_carry_their_language_or_the_gateways() -> None:
    settings = MailSettings(
        report_recipients=[
            "jefa@example.com",
            ReportRecipient(address="boss@example.com", language="en"),
            "JEFA@example.com",  # the same address twice: once
        ],
        report_language="es",
    )
    assert mailing.recipients_of(settings) == [
        mailing.Recipient("jefa@example.com", "es"),
        mailing.Recipient("boss@example.com", "en"),
    ]
    # as the YAML file writes them; a language the panel has no words for names its key
    cfg = config_from_dict(
        {"mail": {"report_recipients": ["a@x.com", {"address": "b@x.com", "language": "en"}]}}
    )
    assert [r.language for r in mailing.recipients_of(cfg.mail)] == ["es", "en"]
    with pytest.raises(ConfigErrors, match=r"mail\.report_recipients\[0\]\.language"):
        config_from_dict({"mail": {"report_recipients": [{"address": "b@x", "language": "fr"}]}})


def test_what_fell_due_between_two_instants() -> None:
    # down from Sunday 29 Nov 06:00 to Tuesday 1 Dec 09:00: two dailies and Monday's weekly
    found = mailing.due_between(_at(2026, 11, 29, 6), _at(2026, 12, 1, 9), MADRID)
    assert [(p, s, e, at) for p, s, e, at in found] == [
        ("daily", date(2026, 11, 28), date(2026, 11, 28), _at(2026, 11, 29, 7)),
        ("daily", date(2026, 11, 29), date(2026, 11, 29), _at(2026, 11, 30, 7)),
        ("weekly", date(2026, 11, 23), date(2026, 11, 29), _at(2026, 11, 30, 7)),
        ("daily", date(2026, 11, 30), date(2026, 11, 30), _at(2026, 12, 1, 7)),
    ]
    assert mailing.due_between(_at(2026, 11, 30, 7, 1), _at(2026, 12, 1, 6), MADRID) == []


def test_the_mail_carries_the_reports_as_xlsx_in_the_readers_language() -> None:
    mail = mailing.compose(_bundle(), wording("en"), "boss@example.com")
    (xlsx,) = mail.attachments
    assert xlsx.filename == "weekly-report-2026-11-30.xlsx"
    assert "The figures are attached as a spreadsheet: weekly-report-2026-11-30.xlsx." in mail.text
    book = openpyxl.load_workbook(io.BytesIO(xlsx.data))
    assert book.sheetnames == ["Calls", "Agents", "Dispositions", "Missed by hour", "Query"]
    total = _totals(book["Calls"])
    assert (total["Offered"], total["Answered"]) == (1354, 1092)
    es = mailing.compose(_bundle("daily"), wording("es"), "jefa@example.com")
    assert es.attachments[0].filename == "informe-diario-2026-11-30.xlsx"
    assert openpyxl.load_workbook(io.BytesIO(es.attachments[0].data)).sheetnames == [
        "Llamadas", "Agentes", "Resultados", "Consulta",
    ]  # fmt: skip


def _totals(ws: Any) -> dict[str, Any]:
    """The totals row of a report sheet, by header."""
    rows = list(ws.iter_rows(values_only=True))
    return next(dict(zip(rows[0], r, strict=True)) for r in rows[1:] if "Total" in r)


# -- sending, over a real SMTP server, with a real store -------------------------------------
# Sunday 29 November 2026 in Madrid: three inbound calls, two answered by 101, one abandoned.


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(store_location: str) -> AsyncIterator[Database]:
    db = await open_store(store_location)
    log = CallLog(db)
    for n, by in enumerate(["101", "101", ""]):
        start = _at(2026, 11, 29, 10) + n * 600
        assert await log.save({
            "id": f"m:{n}", "pbx": "m", "linkedid": str(n), "direction": "inbound",
            "caller": f"+3491123456{n}", "did": "+34910000000", "queue": "ventas",
            "agents_rang": ["101"], "answered_by": by,
            "outcome": "answered" if by else "abandoned", "started_at": start,
            "answered_at": start + 5 if by else None, "ended_at": start + 120,
            "talk_seconds": 115.0 if by else 0.0,
        })  # fmt: skip
    yield db
    await db.close()


def _config(sink: SmtpSink, recipients: list[Any]) -> GatewayConfig:
    return GatewayConfig(
        mail=MailSettings(
            host="127.0.0.1",
            port=sink.port,
            from_address="centralita@example.com",
            report_recipients=recipients,
            report_language="es",
        ),
        panel=PanelSettings(timezone="Europe/Madrid"),
    )


RECIPIENTS: list[Any] = [
    "jefa@example.com",
    ReportRecipient(address="boss@example.com", language="en"),
]


async def _wait_for(sink: SmtpSink, n: int) -> list[EmailMessage]:
    # 15 s, not 3: on a loaded machine four reports built on PostgreSQL took longer than 3
    for _ in range(1500):
        if len(sink.messages) >= n:
            break
        await asyncio.sleep(0.01)
    assert len(sink.messages) == n, [str(m["Subject"]) for m in sink.messages]
    return sink.messages


async def _wait_for_ledger(store: Database) -> None:
    """Until no report mail is left 'sending': the server has a message before its answer
    reaches the mailing, which writes 'sent' after that; a stop in between leaves it
    'sending' (maybe sent), which is not what these tests are about."""
    for _ in range(1500):
        rows = await store.conn.execute_fetchall(
            "SELECT count(*) FROM report_mails WHERE status = 'sending'"
        )
        if next(iter(rows))[0] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a report mail stayed 'sending'")


async def test_a_restart_sends_what_fell_due_while_down_once_and_nothing_twice(
    store: Database,
    smtp_sink: SmtpSink,  # noqa: F811
) -> None:
    clock = Clock(_at(2026, 11, 30, 6))  # Monday, before 07:00
    run = mailing.for_gateway(store, _config(smtp_sink, RECIPIENTS), clock)
    assert run is not None
    try:
        assert await run.tick() == []  # the recipients are known from now on; nothing due
    finally:
        await run.close()  # the gateway goes down before 07:00 ...

    clock.now = _at(2026, 11, 30, 9, 30)  # ... and comes back at 09:30
    run = mailing.for_gateway(store, _config(smtp_sink, RECIPIENTS), clock)
    assert run is not None
    run.start()  # recovers, then sends at once what fell due at 07:00
    try:
        messages = await _wait_for(smtp_sink, 4)
        await _wait_for_ledger(store)
    finally:
        await run.close()
    got = {(str(m["To"]), str(m["Subject"])): m for m in messages}
    assert set(got) == {
        ("jefa@example.com", "Informe diario de llamadas: domingo, 29 nov 2026"),
        ("jefa@example.com", "Informe semanal de llamadas: del 23 nov al 29 nov"),
        ("boss@example.com", "Daily call report: Sunday, Nov 29, 2026"),
        ("boss@example.com", "Weekly call report: Nov 23 to Nov 29"),
    }
    for (to, subject), msg in got.items():
        spanish = to == "jefa@example.com"
        body = msg.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert ("Recibidas: 3" if spanish else "Offered: 3") in text
        (attached,) = list(msg.iter_attachments())
        assert attached.get_content_type() == mailing.XLSX_TYPE
        name = attached.get_filename()
        daily = "diario" in subject or "Daily" in subject
        stem = {(True, True): "informe-diario", (True, False): "informe-semanal",
                (False, True): "daily-report", (False, False): "weekly-report"}[spanish, daily]  # fmt: skip
        assert name == f"{stem}-{'2026-11-29' if daily else '2026-11-23'}.xlsx"
        assert name in text
        book = openpyxl.load_workbook(io.BytesIO(attached.get_content()))
        calls = _totals(book["Llamadas" if spanish else "Calls"])
        offered, answered = ("Recibidas", "Atendidas") if spanish else ("Offered", "Answered")
        assert (calls[offered], calls[answered]) == (3, 2)
        agents = book["Agentes" if spanish else "Agents"]
        rows = list(agents.iter_rows(values_only=True))
        assert any("101" in r and 2 in r for r in rows[1:]), rows  # 101 took both

    # another restart the same morning: nothing again
    clock.now = _at(2026, 11, 30, 10)
    run = mailing.for_gateway(store, _config(smtp_sink, RECIPIENTS), clock)
    assert run is not None
    try:
        assert await run.tick() == []
    finally:
        await run.close()
    assert len(smtp_sink.messages) == 4

    # Tuesday: the gateway dies while sending to jefa@ (its row says 'sending'); at restart
    # that send counts as maybe done: only boss@ gets Monday's report
    clock.now = _at(2026, 12, 1, 7, 1)
    ledger = mailing.ReportLedger(store)
    assert await ledger.claim("daily", date(2026, 11, 30), "jefa@example.com", clock.now)
    clock.now = _at(2026, 12, 1, 7, 30)
    run = mailing.for_gateway(store, _config(smtp_sink, RECIPIENTS), clock)
    assert run is not None
    run.start()
    try:
        messages = await _wait_for(smtp_sink, 5)
        await _wait_for_ledger(store)  # jefa@'s row recovered, boss@'s send recorded
    finally:
        await run.close()
    assert (str(messages[-1]["To"]), str(messages[-1]["Subject"])) == (
        "boss@example.com",
        "Daily call report: Monday, Nov 30, 2026",
    )
    rows = await store.conn.execute_fetchall(
        "SELECT address, status FROM report_mails WHERE start = '2026-11-30'"
    )
    assert sorted(tuple(r) for r in rows) == [
        ("boss@example.com", "sent"),
        ("jefa@example.com", "unknown"),
    ]


async def test_a_temporary_failure_is_tried_again_and_a_new_recipient_gets_no_past_report(
    store: Database,
    smtp_sink: SmtpSink,  # noqa: F811
) -> None:
    clock = Clock(_at(2026, 12, 1, 6))  # Tuesday
    run = mailing.for_gateway(store, _config(smtp_sink, ["jefa@example.com"]), clock)
    assert run is not None
    try:
        assert await run.tick() == []
        clock.now = _at(2026, 12, 1, 7)
        smtp_sink.fail_next(451)
        ((period, start, results),) = await run.tick()
        assert (period, start, [(a, r.status) for a, r in results]) == (
            "daily", date(2026, 11, 30), [("jefa@example.com", "failed")],
        )  # fmt: skip
        clock.now = _at(2026, 12, 1, 7, 5)  # the next check: again, and through
        ((_, _, results),) = await run.tick()
        assert [r.status for _, r in results] == ["sent"]
        assert await run.tick() == []
    finally:
        await run.close()
    assert len(await _wait_for(smtp_sink, 1)) == 1

    # someone is added at 09:00: Tuesday's report (due at 07:00) is not theirs; Wednesday's is
    clock.now = _at(2026, 12, 1, 9)
    both = ["jefa@example.com", "nuevo@example.com"]
    run = mailing.for_gateway(store, _config(smtp_sink, both), clock)
    assert run is not None
    try:
        assert await run.tick() == []
        clock.now = _at(2026, 12, 2, 7, 10)
        ((_, start, results),) = await run.tick()
        assert start == date(2026, 12, 1)
        assert sorted(a for a, _ in results) == both
    finally:
        await run.close()
    await _wait_for(smtp_sink, 3)
