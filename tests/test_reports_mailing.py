"""The daily and weekly report e-mail (gateway/reports/mailing.py): which days it covers, when
it falls due (once), and what reaches a real SMTP server on loopback: the figures and tables
with bars in the reader's language, hostile names escaped, a plain-text twin."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from zoneinfo import ZoneInfo

from gateway.campaigns.mailer import Mailer
from gateway.campaigns.settings import MailSettings
from gateway.reports import mailing
from gateway.reports.locale import wording
from gateway.reports.model import ReportQuery
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401  (pytest fixture)
from tests.test_reports_charts import AGENTS, DISPOSITIONS, HEAT, HOSTILE, SUMMARY

MADRID = ZoneInfo("Europe/Madrid")


def _at(y: int, m: int, d: int, hour: int) -> float:
    return datetime(y, m, d, hour, tzinfo=MADRID).timestamp()


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


async def test_the_mailing_sends_each_report_once_to_every_recipient(smtp_sink: SmtpSink) -> None:  # noqa: F811
    clock = {"now": _at(2026, 11, 30, 6)}
    asked: list[tuple[str, date, date]] = []

    async def make(period: mailing.Period, start: date, end: date) -> mailing.ReportBundle:
        asked.append((period, start, end))
        q = ReportQuery(start=start, end=end)
        b = _bundle(period)
        b.summary.query = q
        return b

    mailer = Mailer(
        MailSettings(host="127.0.0.1", port=smtp_sink.port, from_address="centralita@example.com")
    )
    run = mailing.ReportMailing(
        mailer=mailer, recipients=["a@example.com", "b@example.com"], wording=wording("es"),
        timezone=MADRID, make_bundle=make, clock=lambda: clock["now"],
    )  # fmt: skip
    try:
        assert await run.tick() == []  # 06:00: nothing yet
        clock["now"] = _at(2026, 11, 30, 7)
        sent = await run.tick()
        assert [(p, s) for p, s, _ in sent] == [
            ("daily", date(2026, 11, 29)),
            ("weekly", date(2026, 11, 23)),
        ]
        assert all(r.status == "sent" for _, _, results in sent for r in results)
        assert await run.tick() == []  # once
        for _ in range(200):
            if len(smtp_sink.messages) >= 4:
                break
            await asyncio.sleep(0.01)
        assert sorted(str(m["To"]) for m in smtp_sink.messages) == [
            "a@example.com",
            "a@example.com",
            "b@example.com",
            "b@example.com",
        ]
        subjects = {str(m["Subject"]) for m in smtp_sink.messages}
        assert "Informe diario de llamadas: domingo, 29 nov 2026" in subjects
        assert "Informe semanal de llamadas: del 23 nov al 29 nov" in subjects
        assert asked == [
            ("daily", date(2026, 11, 29), date(2026, 11, 29)),
            ("weekly", date(2026, 11, 23), date(2026, 11, 29)),
        ]
    finally:
        await mailer.close()
