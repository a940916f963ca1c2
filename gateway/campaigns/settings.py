"""Config sections of the campaigns: ``campaigns:`` (hours, caps), ``mail:`` (SMTP out, and
the IMAP mailbox replies come back to) and ``webhooks:`` (lead and call events to other
systems)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

HourMinute = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class OpeningHours(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """On these days, from ``start`` to ``end`` (local time of the lead)."""

    days: list[Weekday]
    start: HourMinute = "09:00"
    end: HourMinute = "19:00"


def _weekdays() -> list[OpeningHours]:
    return [OpeningHours(days=["mon", "tue", "wed", "thu", "fri"])]


class CampaignSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    enabled: bool = True
    # when e-mails go out and call tasks fall due, in each lead's own time zone
    business_hours: list[OpeningHours] = msgspec.field(default_factory=_weekdays)
    holidays: list[date] = msgspec.field(default_factory=list)  # no sends, no calls
    default_timezone: str = "Europe/Madrid"  # leads with no country and no number
    tick_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    # signs the unsubscribe links; empty: one is made and kept in the store
    unsubscribe_secret: str = ""
    # link lifetime: long, because an old e-mail must still let its reader leave (LSSI art. 22)
    unsubscribe_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 1825
    track_opens: bool = True  # a 1x1 image per e-mail, for "opened?" branches

    def __repr__(self) -> str:  # never let the secret reach a log line
        return f"CampaignSettings(enabled={self.enabled!r})"


class ReportRecipient(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A report e-mail recipient with a language of their own (None: ``report_language``)."""

    address: str
    language: Literal["es", "en"] | None = None


class ReplySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The mailbox the campaigns' replies land in (``mail.replies``), read over IMAP by
    :mod:`gateway.campaigns.replies`: replies to campaign e-mails make their leads leave
    ``replied``, delivery failures (DSN) mark the address bounced."""

    host: str
    # None: 993 with tls, 143 otherwise
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    # tls: TLS from the first byte (IMAPS); starttls: upgrade after the greeting; none: plain,
    # for a server on loopback only (the password crosses the wire as it is)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password: str
    mailbox: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "INBOX"
    interval_s: Annotated[float, msgspec.Meta(ge=5, le=3600)] = 60.0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    # PEM file of the authority that signed the server's certificate (a private CA); empty:
    # the system's authorities
    ca_file: str = ""

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("host: expected the IMAP server's name or address, found it empty")
        if not self.username:
            raise ValueError("username: expected the mailbox's login, found it empty")
        if not self.password:
            # never echo the value: it is the secret
            raise ValueError(
                "password: expected the mailbox's password, found it empty "
                "(is the variable it comes from set to nothing?)"
            )

    @property
    def server_port(self) -> int:
        """The port to connect to: ``port``, or the protocol's own for ``security``."""
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143

    @property
    def account(self) -> str:
        """Names the mailbox in logs, /health and the store (no secret in it)."""
        return f"{self.username} at {self.host}:{self.server_port}/{self.mailbox}"

    def __repr__(self) -> str:  # never let the password reach a log line
        return f"ReplySettings(account={self.account!r}, security={self.security!r})"


class MailSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 25
    # none: plain SMTP (a relay on loopback); starttls: upgrade after EHLO; tls: TLS from the
    # first byte (port 465)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: str = ""
    from_address: str = "centralita@localhost"
    from_name: str = "Centralita"
    reply_to: str = ""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    connections: Annotated[int, msgspec.Meta(ge=1, le=32)] = 2  # kept open, in parallel
    # daily/weekly reports and other gateway mail go to these (reports, issue 14): an address,
    # or {address, language} for someone who reads another language than report_language
    report_recipients: list[str | ReportRecipient] = msgspec.field(default_factory=list)
    report_language: Literal["es", "en"] = "es"
    # the reply mailbox, read over IMAP (None: replies are reported through the API only)
    replies: ReplySettings | None = None

    def __repr__(self) -> str:  # never let the password reach a log line
        return f"MailSettings(host={self.host!r}, port={self.port}, security={self.security!r})"


WebhookEvent = Literal[
    "lead.created",
    "lead.status_changed",
    "lead.unsubscribed",
    "lead.converted",
    "call.ended",
]


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """POST each event, as JSON signed with HMAC-SHA256 of ``secret``, to ``url``."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    url: str
    secret: str = ""
    events: list[WebhookEvent] = msgspec.field(
        default_factory=lambda: ["lead.status_changed", "lead.unsubscribed", "lead.converted"]
    )
    timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0

    def __repr__(self) -> str:
        return f"WebhookSettings(name={self.name!r}, url={self.url!r})"
