"""The daily and weekly report by e-mail, to ``mail.report_recipients``, through the
campaigns' :class:`~gateway.campaigns.mailer.Mailer`.

How the charts show in a mail client: as HTML tables whose bars are table cells with a
background colour and a width in percent. Gmail and Outlook (whose desktop versions render
HTML with Word) show no SVG at all, inline or attached as an image, and show PNG only; making
PNGs would need a rasteriser (cairo, Pillow) on every gateway for one e-mail a day. Table bars
render in every client, carry their numbers as text (screen readers, dark mode, clients that
block images all read them) and need no download. The SVG charts and the XLSX are one click
away in the panel's reports page, whose address the e-mail gives when ``panel_url`` is known.

Which day or week a report covers is a pure function of the time (:func:`due`): the daily
report covers yesterday and goes at ``SEND_HOUR`` local time; the weekly one covers Monday to
Sunday and goes on Monday. :class:`ReportMailing` remembers what it sent while it runs; after a
restart it sends what falls due from then on (a report due while the gateway was down is not
sent twice, nor late).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape, unescape
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from gateway.campaigns.mailer import Mailer, OutgoingMail, SendResult
from gateway.reports.charts import PALETTE, disposition_label, group_label
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
    "ReportBundle",
    "ReportMailing",
    "compose",
    "due",
    "for_gateway",
    "period_range",
]

log = logging.getLogger("gateway.reports.mailing")

Period = Literal["daily", "weekly"]
SEND_HOUR = 7  # local time: the report is in the inbox before the morning shift
TOP_ROWS = 15  # agents and dispositions listed in the e-mail; the panel has them all


def period_range(period: Period, today: date) -> tuple[date, date]:
    """The days a report sent on ``today`` covers: yesterday, or last Monday to Sunday."""
    if period == "daily":
        y = today - timedelta(days=1)
        return y, y
    monday = today - timedelta(days=today.weekday() + 7)
    return monday, monday + timedelta(days=6)


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


def compose(bundle: ReportBundle, w: Wording, to: str, *, panel_url: str = "") -> OutgoingMail:
    """The e-mail for one recipient: the figures, then tables with bars (HTML), and the same
    in plain text."""
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
    parts.append(_table(w.t("reports.chart_volume"), heads, cells, bars))
    text += _text_table(w.t("reports.chart_volume"), heads, cells)

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
        parts.append(_table(w.t("reports.chart_agents"), heads, cells, bars))
        text += _text_table(w.t("reports.chart_agents"), heads, cells)

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
        parts.append(_table(w.t("reports.chart_dispositions"), heads, cells, bars))
        text += _text_table(w.t("reports.chart_dispositions"), heads, cells)

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
            parts.append(_table(w.t("reports.mail_worst_hours"), heads, cells, bars))
            text += _text_table(w.t("reports.mail_worst_hours"), heads, cells)

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
    return OutgoingMail(to=to, subject=subject, html=html, text="\n".join(text) + "\n")


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


async def send_bundle(
    mailer: Mailer,
    bundle: ReportBundle,
    w: Wording,
    recipients: Sequence[str],
    *,
    panel_url: str = "",
) -> list[SendResult]:
    """One e-mail per recipient (each sees only their own address); results in order."""
    return [await mailer.send(compose(bundle, w, to, panel_url=panel_url)) for to in recipients]


@dataclass
class ReportMailing:
    """Sends the daily and weekly reports as they fall due, checking every ``every`` seconds."""

    mailer: Mailer
    recipients: Sequence[str]
    wording: Wording
    timezone: ZoneInfo
    make_bundle: Callable[[Period, date, date], Awaitable[ReportBundle]]
    clock: Callable[[], float]
    panel_url: str = ""
    every: float = 300.0
    sent: set[tuple[Period, date]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> list[tuple[Period, date, list[SendResult]]]:
        """Send whatever is due and not sent yet; what was sent, with each recipient's result."""
        done: list[tuple[Period, date, list[SendResult]]] = []
        for period, start, end in due(self.clock(), self.timezone):
            if (period, start) in self.sent:
                continue
            self.sent.add(
                (period, start)
            )  # before sending: a failure is logged, not retried all day
            bundle = await self.make_bundle(period, start, end)
            results = await send_bundle(
                self.mailer, bundle, self.wording, self.recipients, panel_url=self.panel_url
            )
            for to, r in zip(self.recipients, results, strict=True):
                if r.status != "sent":
                    log.warning("report %s %s to %r: %s %s", period, start, to, r.status, r.detail)
            done.append((period, start, results))
        return done

    def start(self) -> None:
        """Mark what is already due as sent (a restart does not send it again), then run."""
        self.sent |= {(p, s) for p, s, _ in due(self.clock(), self.timezone)}
        self._task = asyncio.create_task(self._run(), name="report-mailing")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.tick()
            except Exception:
                log.exception("report mailing failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.mailer.close()


def for_gateway(
    db: Any, cfg: Any, clock: Callable[[], float], panel_url: str = "", lang: str = "es"
) -> ReportMailing | None:
    """The mailing of a gateway (``cfg``: its GatewayConfig), or None without recipients.
    The reports are computed in ``panel.timezone``, like the panel's."""
    if not cfg.mail.report_recipients:
        return None
    from gateway.reports.routes import REPORTS  # the same functions the API serves

    async def make(period: Period, start: date, end: date) -> ReportBundle:
        return await gather(db, cfg.panel, period, start, end, REPORTS)

    return ReportMailing(
        mailer=Mailer(cfg.mail),
        recipients=list(cfg.mail.report_recipients),
        wording=wording(lang),
        timezone=ZoneInfo(cfg.panel.timezone),
        make_bundle=make,
        clock=clock,
        panel_url=panel_url,
    )
