"""The daily and weekly report by e-mail, to ``mail.report_recipients``, through the
campaigns' :class:`~gateway.campaigns.mailer.Mailer`.

How the charts show in a mail client: as HTML tables whose bars are table cells with a
background colour and a width in percent. Gmail and Outlook (whose desktop versions render
HTML with Word) show no SVG at all, inline or attached as an image, and show PNG only; making
PNGs would need a rasteriser (cairo, Pillow) on every gateway for one e-mail a day. Table bars
render in every client, carry their numbers as text (screen readers, dark mode, clients that
block images all read them) and need no download. The figures also travel as an XLSX
attachment (``gateway/reports/export.py``: one sheet per report, headers in the reader's
language), and the SVG charts are one click away in the panel's reports page, whose address the
e-mail gives when ``panel_url`` is known.

Each recipient reads it in their own language (``{address, language}`` in the config), else in
``mail.report_language``.

Which day or week a report covers is a pure function of the time (:func:`due_between`): the
daily report covers yesterday and falls due at ``SEND_HOUR`` local time; the weekly one covers
Monday to Sunday and falls due on Monday. What was sent is kept in the store (migration 0018,
:class:`ReportLedger`), each recipient's row written before the SMTP conversation, so:

* after a restart, a report that fell due while the gateway was down (up to
  :data:`CATCH_UP_DAYS` ago) is sent once, late;
* a report is never sent twice to anybody: a send cut short by a crash counts as maybe sent;
* a temporary SMTP failure is tried again at the next checks (:data:`MAX_ATTEMPTS` in all);
* a new recipient gets the reports that fall due from the moment they were added, not the
  past ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape, unescape
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from gateway.campaigns.mailer import Attachment, Mailer, OutgoingMail, SendResult
from gateway.campaigns.settings import MailSettings
from gateway.reports.charts import PALETTE, disposition_label, group_label
from gateway.reports.export import table, to_xlsx
from gateway.reports.locale import Wording, wording
from gateway.reports.model import (
    DispositionReport,
    HeatmapReport,
    ReportQuery,
    SummaryReport,
    SummaryRow,
)

__all__ = [
    "Period",
    "Recipient",
    "ReportBundle",
    "ReportLedger",
    "ReportMailing",
    "compose",
    "due",
    "due_between",
    "for_gateway",
    "period_range",
    "recipients_of",
]

log = logging.getLogger("gateway.reports.mailing")

Period = Literal["daily", "weekly"]
SEND_HOUR = 7  # local time: the report is in the inbox before the morning shift
TOP_ROWS = 15  # agents and dispositions listed in the e-mail; the panel has them all
CATCH_UP_DAYS = 7  # a report that fell due longer ago than this (the gateway was down) is dropped
MAX_ATTEMPTS = 3  # sends of one report to one recipient after temporary failures
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DAY = 86400.0


def period_range(period: Period, today: date) -> tuple[date, date]:
    """The days a report sent on ``today`` covers: yesterday, or last Monday to Sunday."""
    if period == "daily":
        y = today - timedelta(days=1)
        return y, y
    monday = today - timedelta(days=today.weekday() + 7)
    return monday, monday + timedelta(days=6)


def send_moment(d: date, tz: ZoneInfo) -> float:
    """The instant the reports sent on local day ``d`` fall due (``SEND_HOUR`` there)."""
    return datetime(d.year, d.month, d.day, SEND_HOUR, tzinfo=tz).timestamp()


def due_between(
    since: float, now: float, tz: ZoneInfo, weekly_day: int = 0
) -> list[tuple[Period, date, date, float]]:
    """The reports that fell due in ``[since, now]``, oldest first, each with the instant it
    fell due: a daily one every day, the weekly one on ``weekly_day`` (0 = Monday)."""
    out: list[tuple[Period, date, date, float]] = []
    day = datetime.fromtimestamp(since, tz).date()
    last = datetime.fromtimestamp(now, tz).date()
    while day <= last:
        at = send_moment(day, tz)
        if since <= at <= now:
            out.append(("daily", *period_range("daily", day), at))
            if day.weekday() == weekly_day:
                out.append(("weekly", *period_range("weekly", day), at))
        day += timedelta(days=1)
    return out


def due(now: float, tz: ZoneInfo, weekly_day: int = 0) -> list[tuple[Period, date, date]]:
    """The reports due at ``now`` (once ``SEND_HOUR`` has passed): the daily one every day,
    the weekly one on ``weekly_day`` (0 = Monday). Keyed by their range, so the caller sends
    each (period, start) once."""
    local = datetime.fromtimestamp(now, tz)
    if local.hour < SEND_HOUR:
        return []
    today = local.date()
    out: list[tuple[Period, date, date]] = [("daily", *period_range("daily", today))]
    if today.weekday() == weekly_day:
        out.append(("weekly", *period_range("weekly", today)))
    return out


@dataclass(slots=True)
class ReportBundle:
    """What one e-mail shows: calls over the period, per agent, the wrap-ups, the misses."""

    period: Period
    summary: SummaryReport  # by hour (daily) or by day (weekly)
    agents: SummaryReport
    dispositions: DispositionReport
    heatmap: HeatmapReport | None = None


# -- the message ---------------------------------------------------------------------------

_CELL = "padding:4px 8px;border-bottom:1px solid #e5e7eb;"
_NUM = _CELL + "text-align:right;white-space:nowrap;"


def _bar(fraction: float, colour: str) -> str:
    """A bar Outlook's Word engine draws too: two cells of a 100%-wide table."""
    pct = max(0, min(100, round(fraction * 100)))
    if pct == 0:
        return ""
    rest = (
        f'<td width="{100 - pct}%" style="font-size:0;line-height:0;">&nbsp;</td>'
        if pct < 100
        else ""
    )
    return (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"><tr>'
        f'<td width="{pct}%" bgcolor="{colour}" style="background:{colour};height:10px;'
        f'font-size:0;line-height:0;">&nbsp;</td>{rest}</tr></table>'
    )


def _table(
    caption: str, heads: Sequence[str], rows: Sequence[Sequence[str]], bars: Sequence[str]
) -> str:
    """``rows`` of escaped cells; ``bars`` the bar HTML of each row (a last column)."""
    th = "".join(
        f'<th scope="col" style="{_CELL}text-align:{"right" if i else "left"};">{escape(h)}</th>'
        for i, h in enumerate(heads)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<th scope="row" style="{_CELL}text-align:left;font-weight:normal;">{c}</th>'
            if i == 0
            else f'<td style="{_NUM}">{c}</td>'
            for i, c in enumerate(r)
        )
        + f'<td style="{_CELL}width:30%;">{b}</td></tr>'
        for r, b in zip(rows, bars, strict=True)
    )
    return (
        f'<h2 style="font-size:16px;margin:24px 0 8px;">{escape(caption)}</h2>'
        '<table role="table" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="border-collapse:collapse;font-size:13px;">'
        f'<thead><tr>{th}<th style="{_CELL}"></th></tr></thead><tbody>{body}</tbody></table>'
    )


def _figures(t: SummaryRow, w: Wording) -> list[tuple[str, str]]:
    return [
        (w.t("reports.col_offered"), w.integer(t.offered)),
        (w.t("reports.col_answered"), w.integer(t.answered)),
        (w.t("reports.col_answer_rate"), w.percent(t.answer_rate)),
        (w.t("reports.col_service_level"), w.percent(t.service_level)),
        (w.t("reports.col_missed"), w.integer(t.missed)),
        (w.t("reports.col_abandoned"), w.integer(t.abandoned)),
        (w.t("reports.col_asa"), w.seconds(t.asa)),
        (w.t("reports.col_aht"), w.seconds(t.aht)),
        (w.t("reports.col_callbacks"), w.integer(t.callbacks)),
    ]


def workbook(bundle: ReportBundle, w: Wording) -> bytes:
    """The bundle's reports as one XLSX (a sheet each, in ``w``'s language)."""
    reports: list[tuple[str, Any]] = [
        ("calls", bundle.summary),
        ("agents", bundle.agents),
        ("dispositions", bundle.dispositions),
    ]
    if bundle.heatmap is not None:
        reports.append(("heatmap", bundle.heatmap))
    return to_xlsx([table(name, msgspec.to_builtins(r), w) for name, r in reports], w)


def attachment_name(bundle: ReportBundle, w: Wording) -> str:
    """``informe-diario-2026-11-29.xlsx`` / ``daily-report-2026-11-29.xlsx``."""
    stem = w.t(f"reports.mail_file_{bundle.period}")
    return f"{stem}-{bundle.summary.query.start.isoformat()}.xlsx"


def compose(bundle: ReportBundle, w: Wording, to: str, *, panel_url: str = "") -> OutgoingMail:
    """The e-mail for one recipient: the figures, then tables with bars (HTML), and the same
    in plain text; the reports as an XLSX attachment."""
    q = bundle.summary.query
    if bundle.period == "daily":
        subject = w.t("reports.mail_subject_daily", day=w.full_day(q.start))
    else:
        subject = w.t("reports.mail_subject_weekly", start=w.day(q.start), end=w.day(q.end))
    totals = bundle.summary.totals
    figures = _figures(totals, w)
    tiles = "".join(
        '<td style="padding:8px 12px;border:1px solid #e5e7eb;vertical-align:top;">'
        f'<div style="font-size:12px;color:#4b5563;">{escape(k)}</div>'
        f'<div style="font-size:20px;font-weight:600;color:#1f2937;">{escape(v)}</div></td>'
        for k, v in figures
    )
    parts = [
        f'<h1 style="font-size:20px;margin:0 0 12px;">{escape(subject)}</h1>',
        '<table role="presentation" cellpadding="0" cellspacing="4" border="0"><tr>'
        f"{tiles}</tr></table>",
    ]
    text = [subject, "=" * len(subject), ""] + [f"{k}: {v}" for k, v in figures] + [""]

    def section(title: str, heads: list[str], cells: list[list[str]], bars: list[str]) -> None:
        """One table in both parts: with its bars in the HTML, plain in the text."""
        parts.append(_table(title, heads, cells, bars))
        text.extend(_text_table(title, heads, cells))

    # calls over the period: by hour for a day, by day for a week
    rows = [r for r in bundle.summary.rows if r.offered]
    most = max((r.offered for r in rows), default=0) or 1
    heads = [
        w.t("reports.col_group_hour" if q.group_by == "hour" else "reports.col_group_day"),
        w.t("reports.col_offered"),
        w.t("reports.col_answered"),
        w.t("reports.col_missed"),
        w.t("reports.col_answer_rate"),
    ]
    cells = [
        [escape(group_label(r, q.group_by, w)), w.integer(r.offered), w.integer(r.answered),
         w.integer(r.missed), w.percent(r.answer_rate)]
        for r in rows
    ]  # fmt: skip
    bars = [_bar(r.answered / most, PALETTE["answered"]) for r in rows]
    section(w.t("reports.chart_volume"), heads, cells, bars)

    agents = [r for r in bundle.agents.rows if r.answered or r.ring_no_answer][:TOP_ROWS]
    if agents:
        most_a = max(r.answered for r in agents) or 1
        heads = [w.t("reports.col_agent"), w.t("reports.col_answered"),
                 w.t("reports.col_ring_no_answer"), w.t("reports.col_aht")]  # fmt: skip
        cells = [
            [
                escape(r.label or r.key),
                w.integer(r.answered),
                w.integer(r.ring_no_answer),
                w.seconds(r.aht),
            ]
            for r in agents
        ]
        bars = [_bar(r.answered / most_a, PALETTE["answered"]) for r in agents]
        section(w.t("reports.chart_agents"), heads, cells, bars)

    disp = [r for r in bundle.dispositions.rows if r.count][:TOP_ROWS]
    if disp:
        total = bundle.dispositions.total or sum(r.count for r in disp)
        heads = [w.t("reports.col_disposition"), w.t("reports.col_count"), w.t("reports.col_share")]
        cells = [
            [
                escape(disposition_label(r.key, r.label, w)),
                w.integer(r.count),
                w.percent(r.count / total),
            ]
            for r in disp
        ]
        bars = [_bar(r.count / total, PALETTE["bar"]) for r in disp]
        section(w.t("reports.chart_dispositions"), heads, cells, bars)

    if bundle.heatmap is not None:
        worst = sorted((c for c in bundle.heatmap.cells if c.missed), key=lambda c: -c.missed)[:5]
        if worst:
            most_h = worst[0].missed
            heads = [w.t("reports.col_when"), w.t("reports.col_missed"), w.t("reports.col_offered")]
            cells = [
                [
                    escape(f"{w.weekday(c.weekday, long=True)} {w.hour(c.hour)}"),
                    w.integer(c.missed),
                    w.integer(c.offered),
                ]
                for c in worst
            ]
            bars = [_bar(c.missed / most_h, PALETTE["missed"]) for c in worst]
            section(w.t("reports.mail_worst_hours"), heads, cells, bars)

    file_name = attachment_name(bundle, w)
    attached = w.t("reports.mail_attached", file=file_name)
    parts.append(f'<p style="margin-top:24px;">{escape(attached)}</p>')
    text += ["", attached]
    if panel_url:
        link = panel_url.rstrip("/") + "/panel/#reports"
        parts.append(
            f'<p style="margin-top:24px;"><a href="{escape(link, quote=True)}">'
            f"{escape(w.t('reports.mail_open_panel'))}</a></p>"
        )
        text += [f"{w.t('reports.mail_open_panel')}: {link}"]
    html = (
        f'<!doctype html><html lang="{w.lang}"><head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>"
        '<body style="margin:0;padding:16px;font-family:Segoe UI,Roboto,Helvetica,Arial,sans-serif;'
        'color:#1f2937;background:#ffffff;">'
        f'<div style="max-width:720px;margin:0 auto;">{"".join(parts)}</div></body></html>'
    )
    xlsx = Attachment(file_name, XLSX_TYPE, workbook(bundle, w))
    return OutgoingMail(
        to=to, subject=subject, html=html, text="\n".join(text) + "\n", attachments=(xlsx,)
    )


def _text_table(caption: str, heads: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    plain = [[unescape(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in plain)]) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return ["", caption, "-" * len(caption), line(heads), *(line(r) for r in plain)]


# -- gathering and sending -----------------------------------------------------------------

ReportFn = Callable[[Any, ReportQuery, Any], Awaitable[Mapping[str, Any]]]


async def gather(
    db: Any, settings: Any, period: Period, start: date, end: date, reports: Mapping[str, ReportFn]
) -> ReportBundle:
    """Run the reports one e-mail needs; ``reports`` maps ``calls``, ``agents``,
    ``dispositions`` and ``heatmap`` to the report functions (``gateway.reports.calls``)."""
    q = ReportQuery(start=start, end=end, group_by="hour" if period == "daily" else "day")
    summary = await reports["calls"](db, q, settings)
    agents = await reports["agents"](db, msgspec.structs.replace(q, group_by="agent"), settings)
    disp = await reports["dispositions"](
        db, msgspec.structs.replace(q, group_by="disposition"), settings
    )
    heat = await reports["heatmap"](db, q, settings) if period == "weekly" else None
    return ReportBundle(
        period=period,
        summary=msgspec.convert(summary, SummaryReport),
        agents=msgspec.convert(agents, SummaryReport),
        dispositions=msgspec.convert(disp, DispositionReport),
        heatmap=msgspec.convert(heat, HeatmapReport) if heat is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who gets the reports, and in which language."""

    address: str
    language: str


def recipients_of(mail: MailSettings) -> list[Recipient]:
    """``mail.report_recipients`` with their languages (``report_language`` by default), each
    address once (the first mention wins)."""
    out: dict[str, Recipient] = {}
    for r in mail.report_recipients:
        address, lang = (r, None) if isinstance(r, str) else (r.address, r.language)
        address = address.strip()
        if address and address.lower() not in out:
            out[address.lower()] = Recipient(address, lang or mail.report_language)
    return list(out.values())


_DONE = ("sending", "sent", "bounced", "unknown")  # never sent (again) to that recipient


class ReportLedger:
    """What the report e-mail sent, in the store (migration 0018): the :class:`ReportMailing`
    asks it before each send and tells it after."""

    def __init__(self, db: Any) -> None:
        self.db = db  # gateway.store.db.Database

    async def recover(self) -> int:
        """Sends cut short by a crash or a kill (``sending``) become ``unknown``: maybe sent,
        never sent again. Returns how many."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE report_mails SET status = 'unknown' WHERE status = 'sending'"
            )
            return int(cur.rowcount or 0)

    async def since(self, addresses: Sequence[str], now: float) -> dict[str, float]:
        """When each address became a recipient (new ones: ``now``), by lower-case address."""
        keys = [a.lower() for a in addresses]
        if not keys:
            return {}
        async with self.db.transaction() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO report_mail_recipients (address, since) VALUES (?, ?)",
                [(k, now) for k in keys],
            )
            rows = await conn.execute_fetchall(
                "SELECT address, since FROM report_mail_recipients"
                f" WHERE address IN ({','.join('?' * len(keys))})",
                keys,
            )
        return {r[0]: float(r[1]) for r in rows}

    async def pending(self, period: Period, start: date, addresses: Sequence[str]) -> list[str]:
        """Of ``addresses``, those this report is still owed to: never tried, or failed for a
        temporary reason fewer than :data:`MAX_ATTEMPTS` times."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT address, status, attempts FROM report_mails WHERE period = ? AND start = ?",
            (period, start.isoformat()),
        )
        tried = {r[0]: (r[1], int(r[2])) for r in rows}
        out = []
        for a in addresses:
            status, attempts = tried.get(a.lower(), ("", 0))
            if status in _DONE or (status == "failed" and attempts >= MAX_ATTEMPTS):
                continue
            out.append(a)
        return out

    async def claim(self, period: Period, start: date, address: str, now: float) -> bool:
        """Record a send about to start (committed before SMTP talks); False when another
        claim got there first or the report is no longer owed."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO report_mails (period, start, address, status, attempts, at)"
                " VALUES (?, ?, ?, 'sending', 1, ?)"
                " ON CONFLICT (period, start, address) DO UPDATE SET status = 'sending',"
                " attempts = report_mails.attempts + 1, at = excluded.at"
                " WHERE report_mails.status = 'failed' AND report_mails.attempts < ?",
                (period, start.isoformat(), address.lower(), now, MAX_ATTEMPTS),
            )
            return bool(cur.rowcount)

    async def finish(
        self, period: Period, start: date, address: str, result: SendResult, now: float
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE report_mails SET status = ?, detail = ?, at = ?"
                " WHERE period = ? AND start = ? AND address = ?",
                (result.status, result.detail[:500], now, period, start.isoformat(),
                 address.lower()),
            )  # fmt: skip


SentReport = tuple[Period, date, list[tuple[str, SendResult]]]


@dataclass
class ReportMailing:
    """Sends the daily and weekly reports as they fall due, checking every ``every`` seconds
    (and once at start, for what fell due while the gateway was down)."""

    mailer: Mailer
    recipients: Sequence[Recipient]
    timezone: ZoneInfo
    make_bundle: Callable[[Period, date, date], Awaitable[ReportBundle]]
    clock: Callable[[], float]
    ledger: ReportLedger
    panel_url: str = ""
    every: float = 300.0
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> list[SentReport]:
        """Send whatever is due and owed; what was sent, each recipient's result in order."""
        now = self.clock()
        since = await self.ledger.since([r.address for r in self.recipients], now)
        if not since:
            return []
        earliest = max(now - CATCH_UP_DAYS * DAY, min(since.values()))
        done: list[SentReport] = []
        for period, start, end, at in due_between(earliest, now, self.timezone):
            listed = [r for r in self.recipients if since[r.address.lower()] <= at]
            owed = set(await self.ledger.pending(period, start, [r.address for r in listed]))
            todo = [r for r in listed if r.address in owed]
            if not todo:
                continue
            bundle = await self.make_bundle(period, start, end)
            results: list[tuple[str, SendResult]] = []
            for r in todo:
                if not await self.ledger.claim(period, start, r.address, now):
                    continue
                mail = compose(bundle, wording(r.language), r.address, panel_url=self.panel_url)
                result = await self.mailer.send(mail)
                await self.ledger.finish(period, start, r.address, result, self.clock())
                if result.status != "sent":
                    log.warning(
                        "report %s %s to %r: %s %s",
                        period, start, r.address, result.status, result.detail,
                    )  # fmt: skip
                results.append((r.address, result))
            if results:
                done.append((period, start, results))
        return done

    def start(self) -> None:
        """Run in the background: recover the sends a crash cut short, send what fell due
        while the gateway was down, then check every ``every`` seconds."""
        self._task = asyncio.create_task(self._run(), name="report-mailing")

    async def _run(self) -> None:
        try:
            if await self.ledger.recover():
                log.warning("report mailing: sends cut short by a stop are counted as sent")
        except Exception:
            log.exception("report mailing: recovering the sends under way failed")
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("report mailing failed")
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.mailer.close()


def for_gateway(
    db: Any, cfg: Any, clock: Callable[[], float], panel_url: str = ""
) -> ReportMailing | None:
    """The mailing of a gateway (``cfg``: its GatewayConfig; ``db``: its open store), or None
    without recipients. The reports are computed in ``panel.timezone``, like the panel's."""
    recipients = recipients_of(cfg.mail)
    if not recipients:
        return None
    from gateway.reports.routes import REPORTS  # the same functions the API serves

    async def make(period: Period, start: date, end: date) -> ReportBundle:
        return await gather(db, cfg.panel, period, start, end, REPORTS)

    return ReportMailing(
        mailer=Mailer(cfg.mail),
        recipients=recipients,
        timezone=ZoneInfo(cfg.panel.timezone),
        make_bundle=make,
        clock=clock,
        ledger=ReportLedger(db),
        panel_url=panel_url,
    )
