"""The metrics of one person, from the facts the store holds about them (pure: no I/O, no clock).

:func:`compute` takes a :class:`Facts` (the person, their deals, calls, other activities, open
follow-ups and campaign touches), the time ``now`` and the cohort's rhythm, and answers one
:class:`Metric` per name of :data:`METRICS`. Each metric carries a stable ``reason`` code and its
``params``: the panel and the API turn them into a sentence in the reader's language (catalog
key ``intel.reason.<code>``). A metric the data cannot support says why (``value`` and
``label`` None, reason ``no_purchases``, ``no_rhythm``, ``no_calls``...) instead of a number.

The rules, each chosen so a person can check it by hand:

* a purchase is a won deal, dated by ``closed_at`` (else ``created_at``);
* recency: whole days since the last purchase; frequency: purchases; monetary: the sum of their
  amounts in the currency most of them use (others are counted, not converted);
* RFM: fixed bands (:data:`R_BANDS`, :data:`F_BANDS`, :data:`M_BANDS`) to 1-5 scores, then the
  segment from R and F (:func:`rfm_segment`);
* rhythm: the mean gap between the person's purchases, else the cohort's median gap;
* churn risk within H days: ``lateness = (days since last purchase + H) / rhythm``, risk
  ``clamp((lateness - 1.5) / 1.5, 0, 1)``: nobody is at risk before half a rhythm late, and
  three rhythms without buying is a certain loss;
* projected lifetime value: the next 12 months, ``average order x 365 / rhythm x (1 - churn
  risk at 60 days)``;
* best hour: the hour of the day (in ``tz``) when outbound calls to the person are answered
  most, each hour starting from everybody's rate for it (``Cohort.answers``), worth two calls
  (:mod:`gateway.intel.besthour`); never called: everybody's best hour (``best_hour.everyone``);
* scores (last activity, marketing, engagement, satisfaction, data quality) are 0-100.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from statistics import mean
from zoneinfo import ZoneInfo

import phonenumbers

from gateway.intel.besthour import AnswerProfile, person_hours, tally

DAY = 86400.0
YEAR_DAYS = 365.0
ENGAGEMENT_WINDOW_DAYS = 180.0
ACTIVITY_HORIZON_DAYS = 90.0  # the last-activity score falls to 0 over this many days
STALE_DEAL_DAYS = 7.0  # an open deal untouched this long needs a call
REVIVE_AFTER_DAYS = 30.0  # a lost deal or lead is worth another try after this long
OFFER_LEAD_DAYS = 14.0  # a regular customer's next purchase due within this: send an offer
ANSWERED = frozenset({"answered", "transferred"})

# dispositions that say how the customer felt (panel.dispositions ids; others say nothing)
POSITIVE_DISPOSITIONS = frozenset({"interested", "resolved", "satisfied", "sale"})
NEGATIVE_DISPOSITIONS = frozenset({"complaint", "unresolved", "dissatisfied", "escalated"})

# (upper bound inclusive, score): recency in days, frequency in purchases, monetary in money
R_BANDS = ((30.0, 5), (90.0, 4), (180.0, 3), (365.0, 2))
F_BANDS = ((1.0, 1), (2.0, 2), (4.0, 3), (9.0, 4))
M_BANDS = ((99.99, 1), (499.99, 2), (1999.99, 3), (9999.99, 4))

# data quality: what each complete part is worth (sums to 100)
QUALITY_WEIGHTS = {
    "callable_phone": 30,
    "valid_email": 20,
    "name": 15,
    "owner": 15,
    "company": 10,
    "country": 10,
}

METRICS = (
    "recency",
    "frequency",
    "monetary",
    "rfm_segment",
    "clv_historic",
    "clv_projected",
    "churn_30",
    "churn_60",
    "last_activity",
    "marketing",
    "engagement",
    "satisfaction",
    "best_channel",
    "best_hour",
    "data_quality",
    "next_best",
)
# what the pop-up shows (the record view shows all)
CARD_METRICS = ("rfm_segment", "clv_historic", "churn_30", "data_quality", "next_best")
# person_metrics also holds these five together in one row of this name, for the card's query
CARD_ROW = "card"

Param = str | int | float | list[str] | list[int | None]


# -- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DealFact:
    """One deal: ``stage`` of gateway.store.deals.STAGES; a won deal is a purchase."""

    stage: str
    amount: float | None
    currency: str
    created_at: float
    closed_at: float | None = None
    product: str = ""
    title: str = ""
    updated_at: float | None = None

    @property
    def status(self) -> str:
        """won, lost or open (the stages before a decision)."""
        return self.stage if self.stage in ("won", "lost") else "open"

    @property
    def at(self) -> float:
        return self.closed_at if self.closed_at is not None else self.created_at


@dataclass(frozen=True, slots=True)
class CallFact:
    """One call with the person (from the call log, or the call that just ended)."""

    id: str
    started_at: float
    direction: str  # inbound | outbound | internal
    outcome: str
    disposition: str = ""

    @property
    def answered(self) -> bool:
        return self.outcome in ANSWERED


@dataclass(frozen=True, slots=True)
class TouchFact:
    """One campaign step run for the person (campaign_step_runs)."""

    kind: str  # email | call
    status: str  # gateway.campaigns.model.RunStatus
    at: float
    opened_at: float | None = None
    replied_at: float | None = None
    call_outcome: str | None = None
    disposition: str | None = None


@dataclass(frozen=True, slots=True)
class PhoneFact:
    e164: str
    do_not_call: bool = False


@dataclass(frozen=True, slots=True)
class EmailFact:
    email: str
    bounced: bool = False
    opted_out: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """The person's record as far as the metrics need it."""

    kind: str = "contact"
    first_name: str = ""
    last_name: str = ""
    company: str = ""  # the account's name, else the free-text company
    country: str = ""
    owner: str | None = None
    status: str | None = None
    lost_reason: str = ""
    lost_at: float | None = None
    do_not_call: bool = False
    email_opt_out: bool = False
    phones: tuple[PhoneFact, ...] = ()
    emails: tuple[EmailFact, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything :func:`compute` reads about one person."""

    profile: Profile
    deals: tuple[DealFact, ...] = ()
    calls: tuple[CallFact, ...] = ()
    activities: tuple[tuple[str, float], ...] = ()  # (kind, at): notes and e-mails, not calls
    follow_ups: tuple[float, ...] = ()  # due_at of the open ones
    touches: tuple[TouchFact, ...] = ()


@dataclass(frozen=True, slots=True)
class Cohort:
    """What the whole customer base says: the median gap between purchases (days), and
    everybody's answers to outbound calls by weekday and hour (the best hour's prior)."""

    median_gap_days: float | None = None
    customers: int = 0
    answers: AnswerProfile | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: a number (``value``) and/or a category (``label``), and why."""

    name: str
    value: float | None
    label: str | None
    reason: str  # stable code; the sentence is intel.reason.<code> in the catalogs
    params: dict[str, Param] = field(default_factory=dict)


# -- helpers -------------------------------------------------------------------------------------


def _band(x: float, bands: Sequence[tuple[float, int]]) -> int:
    for upper, score in bands:
        if x <= upper:
            return score
    return 5 if bands[0][1] == 1 else 1  # past the last band: the best (F, M) or worst (R)


def rfm_segment(r: int, f: int) -> str:
    """The segment of 1-5 recency and frequency scores (monetary only orders within it)."""
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 4 and f == 1:
        return "new_customer"
    if r >= 4:
        return "promising"
    if r == 3:
        return "needs_attention"
    if f >= 3:
        return "at_risk"
    if r == 2:
        return "about_to_sleep"
    return "hibernating"


def _days(seconds: float) -> int:
    return max(0, math.floor(seconds / DAY))


def _money(x: float) -> float:
    return round(x, 2)


def _pct(x: float) -> int:
    return round(100 * x)


def _valid_number(e164: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def _none(name: str, reason: str, **params: Param) -> Metric:
    return Metric(name, None, None, reason, dict(params))


def churn_risk(days_since: float, horizon: float, rhythm: float) -> float:
    """Probability-like 0-1: how late the person will be at the horizon's end, in rhythms."""
    lateness = (days_since + horizon) / rhythm
    return round(min(1.0, max(0.0, (lateness - 1.5) / 1.5)), 2)


def risk_band(risk: float) -> str:
    return "low" if risk < 0.3 else "medium" if risk < 0.6 else "high"


# -- the computation -----------------------------------------------------------------------------


def compute(facts: Facts, now: float, tz: ZoneInfo, cohort: Cohort | None = None) -> list[Metric]:
    """Every metric of :data:`METRICS`, in that order."""
    cohort = cohort or Cohort()
    p = facts.profile
    won = sorted((d for d in facts.deals if d.status == "won"), key=lambda d: d.at)
    out: dict[str, Metric] = {}

    # -- purchases: recency, frequency, monetary, RFM, historic value --------------------------
    amounts = [d for d in won if d.amount is not None]
    currencies = Counter(d.currency for d in amounts)
    currency = currencies.most_common(1)[0][0] if currencies else ""
    priced = [d for d in amounts if d.currency == currency]
    total = sum(d.amount or 0.0 for d in priced)
    others = len(amounts) - len(priced)
    if not won:
        for name in ("recency", "monetary", "clv_historic"):
            out[name] = _none(name, "no_purchases")
        out["frequency"] = Metric("frequency", 0, None, "no_purchases", {})
        out["rfm_segment"] = Metric("rfm_segment", None, "prospect", "rfm.prospect", {})
        days_since = None
    else:
        last = won[-1]
        days_since = (now - last.at) / DAY
        out["recency"] = Metric(
            "recency",
            _days(now - last.at),
            None,
            "recency.days",
            {"days": _days(now - last.at), "product": last.product or last.title},
        )
        first_day = datetime.fromtimestamp(won[0].at, tz).date().isoformat()
        out["frequency"] = Metric(
            "frequency", len(won), None, "frequency.count", {"count": len(won), "since": first_day}
        )
        if priced:
            money: dict[str, Param] = {
                "amount": _money(total),
                "currency": currency,
                "count": len(priced),
                "other_currencies": others,
            }
            out["monetary"] = Metric("monetary", _money(total), currency, "monetary.sum", money)
            out["clv_historic"] = Metric(
                "clv_historic", _money(total), currency, "clv.historic", dict(money)
            )
        else:
            out["monetary"] = _none("monetary", "no_amounts", count=len(won))
            out["clv_historic"] = _none("clv_historic", "no_amounts", count=len(won))
        r = _band(days_since, R_BANDS)
        f = _band(len(won), F_BANDS)
        m = _band(total, M_BANDS) if priced else 1
        out["rfm_segment"] = Metric(
            "rfm_segment",
            r * 100 + f * 10 + m,
            rfm_segment(r, f),
            "rfm.scores",
            {"r": r, "f": f, "m": m, "days": _days(now - last.at), "count": len(won)},
        )

    # -- rhythm: churn risk and projected value --------------------------------------------------
    gaps = [(b.at - a.at) / DAY for a, b in pairwise(won)]
    rhythm: float | None = None
    source = ""
    if gaps and mean(gaps) > 0:
        rhythm, source = mean(gaps), "own"
    elif cohort.median_gap_days:
        rhythm, source = cohort.median_gap_days, "cohort"
    for horizon in (30, 60):
        name = f"churn_{horizon}"
        if days_since is None:
            out[name] = _none(name, "no_purchases")
        elif rhythm is None:
            out[name] = _none(name, "no_rhythm", count=len(won))
        else:
            risk = churn_risk(days_since, horizon, rhythm)
            out[name] = Metric(
                name,
                risk,
                risk_band(risk),
                f"churn.{source}",
                {
                    "days": _days(now - won[-1].at),
                    "gap_days": round(rhythm),
                    "horizon": horizon,
                    "percent": _pct(risk),
                },
            )
    if not won:
        out["clv_projected"] = _none("clv_projected", "no_purchases")
    elif not priced:
        out["clv_projected"] = _none("clv_projected", "no_amounts", count=len(won))
    elif rhythm is None:
        out["clv_projected"] = _none("clv_projected", "no_rhythm", count=len(won))
    else:
        aov = total / len(priced)
        retention = 1.0 - (out["churn_60"].value or 0.0)
        value = _money(aov * YEAR_DAYS / rhythm * retention)
        out["clv_projected"] = Metric(
            "clv_projected",
            value,
            currency,
            f"clv.projected_{source}",
            {
                "amount": value,
                "currency": currency,
                "average": _money(aov),
                "gap_days": round(rhythm),
                "retention": _pct(retention),
            },
        )

    # -- last activity -------------------------------------------------------------------------
    touches: list[tuple[float, str]] = [(c.started_at, "call") for c in facts.calls]
    touches += [(at, kind) for kind, at in facts.activities]
    touches += [(d.at, "purchase") for d in won]
    touches += [(t.at, "email") for t in facts.touches if t.kind == "email" and _sent(t)]
    open_fu = len(facts.follow_ups)
    overdue = sum(1 for due in facts.follow_ups if due < now)
    if not touches:
        out["last_activity"] = Metric(
            "last_activity",
            None,
            None,
            "no_activity",
            {"open": open_fu, "overdue": overdue},
        )
        last_touch_days = None
    else:
        at, kind = max(touches)
        last_touch_days = (now - at) / DAY
        score = max(0, round(100 * (1 - last_touch_days / ACTIVITY_HORIZON_DAYS)))
        out["last_activity"] = Metric(
            "last_activity",
            score,
            kind,
            "last_activity.kind",
            {"kind": kind, "days": _days(now - at), "open": open_fu, "overdue": overdue},
        )

    # -- marketing (campaign touches) ----------------------------------------------------------
    emails = [t for t in facts.touches if t.kind == "email" and _sent(t)]
    opened = sum(1 for t in emails if t.opened_at is not None or t.replied_at is not None)
    replied = sum(1 for t in emails if t.replied_at is not None)
    tasks = [t for t in facts.touches if t.kind == "call" and t.status in ("called", "expired")]
    answered_tasks = sum(1 for t in tasks if (t.call_outcome or "") in ANSWERED)
    if not emails and not tasks:
        out["marketing"] = _none("marketing", "no_campaigns")
    else:
        # an open is half a reply; an answered campaign call is worth a reply
        points = 0.5 * (opened - replied) + replied + answered_tasks
        score = round(100 * points / (len(emails) + len(tasks)))
        out["marketing"] = Metric(
            "marketing",
            score,
            None,
            "marketing.campaigns",
            {
                "emails": len(emails),
                "opened": opened,
                "replied": replied,
                "calls": len(tasks),
                "answered": answered_tasks,
            },
        )

    # -- engagement (last 180 days, both ways) -----------------------------------------------------
    since = now - ENGAGEMENT_WINDOW_DAYS * DAY
    recent_calls = [c for c in facts.calls if c.started_at >= since]
    inbound = sum(1 for c in recent_calls if c.direction == "inbound")
    outbound = [c for c in recent_calls if c.direction == "outbound"]
    out_answered = sum(1 for c in outbound if c.answered)
    recent_mail = [t for t in emails if t.at >= since]
    mail_opened = sum(1 for t in recent_mail if t.opened_at is not None or t.replied_at is not None)
    purchases = sum(1 for d in won if d.at >= since)
    responsive = inbound + out_answered + mail_opened + purchases
    ignored = (len(outbound) - out_answered) + (len(recent_mail) - mail_opened)
    if responsive + ignored == 0:
        out["engagement"] = _none("engagement", "no_contact")
    else:
        out["engagement"] = Metric(
            "engagement",
            round(100 * responsive / (responsive + ignored)),
            None,
            "engagement.mix",
            {
                "answered": out_answered,
                "outbound": len(outbound),
                "inbound": inbound,
                "opened": mail_opened,
                "emails": len(recent_mail),
                "purchases": purchases,
            },
        )

    # -- satisfaction (dispositions) -------------------------------------------------------------
    dispositions = [c.disposition for c in facts.calls if c.disposition]
    dispositions += [t.disposition for t in facts.touches if t.disposition]
    pos = sum(1 for d in dispositions if d in POSITIVE_DISPOSITIONS)
    neg = sum(1 for d in dispositions if d in NEGATIVE_DISPOSITIONS)
    if pos + neg == 0:
        out["satisfaction"] = _none("satisfaction", "no_rated_calls")
    else:
        out["satisfaction"] = Metric(
            "satisfaction",
            round(100 * pos / (pos + neg)),
            None,
            "satisfaction.dispositions",
            {"positive": pos, "negative": neg},
        )

    # -- reachability: best channel, best hour ---------------------------------------------------
    phone_ok = not p.do_not_call and any(
        not ph.do_not_call and _valid_number(ph.e164) for ph in p.phones
    )
    email_ok = not p.email_opt_out and any(not e.bounced and not e.opted_out for e in p.emails)
    all_out = [c for c in facts.calls if c.direction == "outbound"]
    all_in = [c for c in facts.calls if c.direction == "inbound"]
    phone_rate = (sum(1 for c in all_out if c.answered) + len(all_in) + 1) / (
        len(all_out) + len(all_in) + 2
    )
    email_rate = (opened + 1) / (len(emails) + 2)
    rates: dict[str, Param] = {"phone": _pct(phone_rate), "email": _pct(email_rate)}
    if not phone_ok and not email_ok:
        out["best_channel"] = _none("best_channel", "unreachable")
    elif phone_ok != email_ok:
        only = "phone" if phone_ok else "email"
        out["best_channel"] = Metric("best_channel", None, only, f"channel.only_{only}", rates)
    elif not facts.calls and not emails:
        out["best_channel"] = Metric("best_channel", None, "phone", "channel.no_history", rates)
    else:
        best = "phone" if phone_rate >= email_rate else "email"
        out["best_channel"] = Metric("best_channel", None, best, "channel.rates", rates)

    # outbound calls only: the question is when they pick up when *we* call (an inbound call
    # says when they were free to call, not whether they answer); the hour is local to ``tz``
    outbound_calls = ((c.started_at, c.answered) for c in facts.calls if c.direction == "outbound")
    hours = person_hours(tally(outbound_calls, tz), cohort.answers)
    if hours.best is None:
        out["best_hour"] = _none("best_hour", "no_calls")
    else:
        h = hours.best
        own = hours.own[h]
        out["best_hour"] = Metric(
            "best_hour",
            h,
            f"{h:02d}:00",
            "best_hour.everyone" if hours.from_prior else "best_hour.rate",
            {
                "hour": f"{h:02d}:00",
                "percent": _pct(hours.rates[h]),
                "calls": own.attempts,
                "answered": own.answered,
                # every hour's estimate and their zone: the worklist and campaigns pick the
                # best *open* hour from these (gateway/intel/besthour.py)
                "rates": [None if r is None else _pct(r) for r in hours.recommendable()],
                "tz": str(tz),
            },
        )

    # -- data quality ------------------------------------------------------------------------------
    missing: list[str] = []
    if not any(_valid_number(ph.e164) and not ph.do_not_call for ph in p.phones):
        missing.append("callable_phone")
    if not any(not e.bounced for e in p.emails):
        missing.append("valid_email")
    if not (p.first_name.strip() or p.last_name.strip()):
        missing.append("name")
    if not p.owner:
        missing.append("owner")
    if not p.company.strip():
        missing.append("company")
    if not p.country.strip():
        missing.append("country")
    quality = 100 - sum(QUALITY_WEIGHTS[k] for k in missing)
    bounced = sum(1 for e in p.emails if e.bounced)
    out["data_quality"] = Metric(
        "data_quality",
        quality,
        "good" if quality >= 80 else "fair" if quality >= 50 else "poor",
        "data_quality.missing" if missing else "data_quality.complete",
        {"missing": missing, "bounced": bounced},
    )

    out["next_best"] = _next_best(facts, now, out, won, rhythm, days_since, last_touch_days)
    return [out[name] for name in METRICS]


def _sent(t: TouchFact) -> bool:
    """A campaign e-mail that left (or may have: 'unknown'), bounces included."""
    return t.status in ("sent", "bounced", "unknown") or t.opened_at is not None


def _next_best(
    facts: Facts,
    now: float,
    m: dict[str, Metric],
    won: list[DealFact],
    rhythm: float | None,
    days_since: float | None,
    last_touch_days: float | None,
) -> Metric:
    """The first rule that applies, most urgent first (a person reads why in the reason)."""
    p = facts.profile
    channel = m["best_channel"].label
    hour = m["best_hour"].label or ""
    reach: dict[str, Param] = {"channel": channel or "", "hour": hour}

    def act(label: str, reason: str, **params: Param) -> Metric:
        return Metric("next_best", None, label, reason, {**reach, **params})

    quality = m["data_quality"]
    if (quality.value or 0) < 50:
        return act("update_data", "next.update_data", missing=quality.params["missing"])
    if channel is None:
        return act("none", "next.unreachable")
    overdue = [due for due in facts.follow_ups if due < now]
    if overdue:
        return act(
            "call_back",
            "next.follow_up_overdue",
            count=len(overdue),
            days=_days(now - min(overdue)),
        )
    open_deals = sorted(
        (d for d in facts.deals if d.status == "open"), key=lambda d: d.updated_at or d.created_at
    )
    if open_deals:
        deal = open_deals[-1]
        moved = deal.updated_at or deal.created_at
        if last_touch_days is not None:
            moved = max(moved, now - last_touch_days * DAY)
        if now - moved >= STALE_DEAL_DAYS * DAY:
            return act(
                "call_back",
                "next.open_deal",
                title=deal.title,
                stage=deal.stage,
                days=_days(now - moved),
            )
    lost = [d for d in facts.deals if d.status == "lost"]
    lost_at = max((d.at for d in lost), default=None)
    if p.status == "lost" and p.lost_at is not None:
        lost_at = max(lost_at or 0.0, p.lost_at)
    last_win = won[-1].at if won else None
    if (
        lost_at is not None
        and (last_win is None or lost_at > last_win)
        and now - lost_at >= REVIVE_AFTER_DAYS * DAY
    ):
        return act(
            "revive_lost_deal",
            "next.revive",
            days=_days(now - lost_at),
            lost_reason=p.lost_reason,
        )
    churn = m["churn_30"]
    if churn.label in ("medium", "high"):
        label = "call_back" if channel == "phone" else "send_offer"
        return act(label, "next.churn", percent=churn.params["percent"])
    if rhythm is not None and days_since is not None and days_since >= rhythm - OFFER_LEAD_DAYS:
        product = won[-1].product or won[-1].title
        due_in = max(0, round(rhythm - days_since))
        return act("send_offer", "next.purchase_due", days=due_in, product=product)
    if p.kind == "lead" and p.status in (None, "new", "contacted"):
        if last_touch_days is None:
            return act("call_back", "next.lead_new")
        if last_touch_days >= STALE_DEAL_DAYS:
            return act("call_back", "next.lead_waiting", days=_days(last_touch_days * DAY))
    return act("no_action", "next.nothing_urgent")
