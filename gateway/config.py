"""Typed configuration: one YAML file, ``${ENV}`` secrets, errors that name the key and the fix.

``load_config(path)`` reads YAML with ``safe_load``, substitutes ``${VAR}`` from the
environment, converts to frozen structs with msgspec, then checks what types alone cannot
(unique names, existing paths, valid regexes). Every problem is a ``ConfigError`` whose text
reads ``<key path>: expected <what>, found <what>``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import phonenumbers
import yaml

from connectors.settings import ConnectorSettings
from gateway.access import TOKEN_SCOPES
from gateway.calls.settings import TrackingSettings
from gateway.campaigns.settings import CampaignSettings, MailSettings, WebhookSettings
from gateway.cluster.settings import ClusterSettings, mask_url
from gateway.errors import ConfigError
from gateway.lookup.settings import LookupSettings
from gateway.panel.settings import PanelSettings
from gateway.store.scoring import ScoringSettings


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ReconnectSettings(_Section):
    initial: float = 0.5  # first wait after a drop, seconds
    maximum: float = 30.0  # cap of the exponential backoff, seconds


class PbxSettings(_Section, kw_only=True):
    name: str
    host: str = "127.0.0.1"
    port: int = 5038
    username: str
    secret: str = msgspec.field(default="")
    auth: Literal["plain", "md5"] = "md5"
    ping_interval: float = 10.0  # a link silent for two intervals is declared dead
    action_timeout: float = 5.0
    connect_timeout: float = 5.0
    reconnect: ReconnectSettings = msgspec.field(default_factory=ReconnectSettings)
    queues: bool = True  # read QueueStatus on every (re)connect
    record_to: str | None = None  # append the raw AMI stream to this file, for `replay`

    def __repr__(self) -> str:  # never let the secret reach a log line
        return f"PbxSettings(name={self.name!r}, host={self.host!r}, port={self.port})"


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how CRMs reach us (links to recordings); default http://host:port
    # addresses or networks of the TLS-terminating proxies in front of us: only from these are
    # X-Forwarded-Proto (the cookie's Secure flag) and X-Forwarded-For (the client) believed
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # /metrics and /status: clients in ops_allow read them freely, anyone else needs
    # "Authorization: Bearer <ops_token>" (no token: refused)
    ops_allow: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    ops_token: str = ""
    header_timeout: float = 10.0  # a connection that has not sent its request head is closed

    def __repr__(self) -> str:  # never let the ops token reach a log line
        return f"HttpSettings(host={self.host!r}, port={self.port})"


class StoreSettings(_Section):
    """Where the store lives: a SQLite file (``path``, the default) or a PostgreSQL database
    that several gateway instances share (``url``; docs/scale-out.md)."""

    path: str = "state/centralita.db"
    # postgresql://user:password@host:port/db (``?host=/run/postgresql`` for a Unix socket);
    # write the password as ${STORE_PASSWORD} or the whole URL as ${STORE_URL}. Empty: SQLite
    url: str = ""

    def __post_init__(self) -> None:
        if not self.url:
            return
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 (raises on a port that is not a number 0-65535)
            usable = parts.scheme in ("postgresql", "postgres") and parts.path not in ("", "/")
        except ValueError:
            usable = False
        if not usable:
            raise ValueError(
                "url: expected postgresql://user:password@host:port/database, "
                f"found {mask_url(self.url)!r}"
            )

    @property
    def shared(self) -> bool:
        """Whether the store is a server's database (PostgreSQL) rather than a local file."""
        return bool(self.url)

    @property
    def where(self) -> str:
        """The store as logs and messages may show it: the file, or the URL without password."""
        return mask_url(self.url) if self.url else self.path

    def __repr__(self) -> str:  # the URL may carry the database password
        return f"StoreSettings(where={self.where!r})"


class RecordingSettings(_Section):
    directory: str = "/var/spool/asterisk/monitor"


class ApiToken(_Section, kw_only=True):
    name: str
    token: str
    scopes: list[str] = msgspec.field(default_factory=lambda: ["*"])

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, scopes={self.scopes!r})"


# every scope a token may hold: what the access table's routes ask for, and "*"
API_SCOPES = TOKEN_SCOPES
MIN_TOKEN_LENGTH = 16  # a token anyone can guess in a few tries is no lock


class ApiSettings(_Section):
    tokens: list[ApiToken] = msgspec.field(default_factory=list)


class OriginateSettings(_Section):
    context: str = "outbound"  # dialplan context that dials the customer (dialplan/)
    agent_channel: str = "PJSIP/{ext}"  # how to ring an agent's extension
    timeout: float = 30.0  # seconds the agent's phone may ring
    caller_id: str = ""  # caller ID shown on the agent's phone; default: the customer number


class AgiSettings(_Section):
    # FastAGI for the dialplan: AGI(agi://<host>:<port>/callerid) sets CALLERID(name) from
    # the CRM and CENTRALITA_OWNER_EXT to the caller's owner agent (dialplan/centralita.conf)
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 4573
    time_limit_ms: int = 500  # the call never waits longer than this for a name


class WritebackSettings(_Section):
    # a finished call waits this long before it goes to the CRMs, so the agent's notes and
    # disposition (added in wrap-up) travel with it instead of as a second write
    hold_seconds: float = 60.0


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class DemoSettings(_Section):
    calls_per_minute: float = 6.0
    contacts: int = 300
    seed: int = 7


class GatewayConfig(_Section):
    pbx: list[PbxSettings] = msgspec.field(default_factory=list)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    tracking: TrackingSettings = msgspec.field(default_factory=TrackingSettings)
    lookup: LookupSettings = msgspec.field(default_factory=LookupSettings)
    connectors: list[ConnectorSettings] = msgspec.field(default_factory=list)
    recordings: RecordingSettings = msgspec.field(default_factory=RecordingSettings)
    originate: OriginateSettings = msgspec.field(default_factory=OriginateSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    writeback: WritebackSettings = msgspec.field(default_factory=WritebackSettings)
    panel: PanelSettings = msgspec.field(default_factory=PanelSettings)
    agi: AgiSettings = msgspec.field(default_factory=AgiSettings)
    scoring: ScoringSettings = msgspec.field(default_factory=ScoringSettings)
    campaigns: CampaignSettings = msgspec.field(default_factory=CampaignSettings)
    mail: MailSettings = msgspec.field(default_factory=MailSettings)
    webhooks: list[WebhookSettings] = msgspec.field(default_factory=list)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    demo: DemoSettings = msgspec.field(default_factory=DemoSettings)
    # several instances, one owner per PBX link (docs/scale-out.md); absent: this one alone
    cluster: ClusterSettings | None = None


# what only a process that connects out (PBX, CRMs) or serves the API reads
OFFLINE_SECTIONS = frozenset({"pbx", "connectors", "api", "mail", "webhooks", "cluster"})
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def load_config(
    path: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    *,
    require_pbx: bool = False,
    offline: bool = False,
) -> GatewayConfig:
    """Read and validate a config file; raises ConfigError naming the offending key (a
    ``ConfigErrors`` listing every one when there are several). ``require_pbx``: the file is
    for ``run``, which needs a PBX to connect to. ``offline``: for commands that touch only
    the store (``user``, ``import``, ``export``, ``replay``): the sections they never use
    (``OFFLINE_SECTIONS``: PBX, CRMs, API tokens) are left out, so their secrets need not be
    in this shell's environment."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {e.strerror}") from e
    return parse_config(text, env=env, source=str(p), require_pbx=require_pbx, offline=offline)


def parse_config(
    text: str,
    env: dict[str, str] | None = None,
    source: str = "<config>",
    *,
    require_pbx: bool = False,
    offline: bool = False,
) -> GatewayConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError("", f"{source} is not valid YAML{where}: {problem}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("", f"expected a mapping of sections at the top, found {_kind(raw)}")
    errors: list[ConfigError] = []
    if offline:
        raw = {k: v for k, v in raw.items() if k not in OFFLINE_SECTIONS}
    raw = _substitute_env(raw, os.environ if env is None else env, "", errors)
    if errors:
        raise ConfigErrors(errors)
    return config_from_dict(raw, require_pbx=require_pbx)


class ConfigErrors(ConfigError):
    """Several config mistakes at once, so one run of ``check-config`` shows every one; it
    reads (and matches) as the first, and ``errors`` holds them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.message)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return str(self.args[0])


def config_from_dict(raw: dict[str, Any], *, require_pbx: bool = False) -> GatewayConfig:
    try:
        cfg = msgspec.convert(raw, GatewayConfig, strict=True)
    except msgspec.ValidationError as e:
        raise ConfigErrors(_every_type_error(raw) or [_explain(e, raw)]) from e
    problems = _check(cfg)
    if require_pbx and not cfg.pbx:
        problems.insert(
            0, ConfigError("pbx", "expected at least one PBX to connect to, found none")
        )
    if problems:
        raise ConfigErrors(problems)
    return cfg


def _every_type_error(raw: dict[str, Any]) -> list[ConfigError]:
    """msgspec stops at the first mistake; converting each section (and each item of a list
    section) alone finds the first mistake of every one of them."""
    fields = {f.name: f.type for f in msgspec.structs.fields(GatewayConfig)}
    errors: list[ConfigError] = []
    for key, value in raw.items():
        if key not in fields:
            errors.append(
                ConfigError(str(key), f"unknown key {key!r}; expected one of: {', '.join(fields)}")
            )
            continue
        parts = (
            [(f"{key}[{i}]", {key: [v]}) for i, v in enumerate(value)]
            if (isinstance(value, list) and typing.get_origin(fields[key]) is list)
            else [(key, {key: value})]
        )
        for where, alone in parts:
            try:
                msgspec.convert(alone, GatewayConfig, strict=True)
            except msgspec.ValidationError as e:
                err = _explain(e, alone)
                path = where + err.path.removeprefix(f"{key}[0]") if where != key else err.path
                errors.append(ConfigError(path, err.message))
    return errors


def _substitute_env(node: Any, env: Any, path: str, errors: list[ConfigError]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute_env(v, env, _join(path, str(k)), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, env, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return str(env[name])
            if default is not None:
                return default
            errors.append(
                ConfigError(
                    path,
                    f"expected environment variable {name} to be set (referenced as "
                    f"${{{name}}}), found it unset; export {name}=... or write "
                    f"${{{name}:-default}}",
                )
            )
            return ""

        return _ENV.sub(repl, node)
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _explain(err: msgspec.ValidationError, raw: dict[str, Any]) -> ConfigError:
    m = _MSGSPEC_AT.match(str(err))
    assert m is not None
    msg, at = m.group("msg"), (m.group("path") or "").lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]*)`", msg)
    if unknown:
        key = unknown.group(1)
        return ConfigError(
            _join(at, key),
            f"unknown key {key!r}; expected one of: {_known_keys(at, raw)}",
        )
    missing = re.match(r"Object missing required field `([^`]*)`", msg)
    if missing:
        return ConfigError(_join(at, missing.group(1)), "required key is missing")
    found = _shown(_lookup(raw, at))
    expected = re.match(r"Expected `([^`]*)`, got `([^`]*)`", msg)
    if expected:
        return ConfigError(
            at, f"expected {expected.group(1)}, found {found!r} ({expected.group(2)})"
        )
    if msg.startswith("Invalid enum value"):
        return ConfigError(at, f"expected {_allowed(at, raw)}, found {found!r}")
    # a struct's own check ("url: expected ..., found ...") already names key and finding
    own = re.match(r"^([A-Za-z_][\w]*): (.*)$", msg, re.S)
    if own and "found" in own.group(2):
        return ConfigError(_join(at, own.group(1)), own.group(2))
    if "found" in msg:
        return ConfigError(at, msg)
    return ConfigError(at, f"{msg[0].lower()}{msg[1:]}, found {found!r}")


class _Shown:
    """A found value as an error message may show it: scalars as they are, mappings and lists
    only by shape, so a password next to the mistake never reaches a terminal or a log."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(value: Any) -> Any:
    if isinstance(value, dict):
        return _Shown(f"a mapping with keys {sorted(map(str, value))}")
    if isinstance(value, list):
        return _Shown(f"a list of {len(value)} item(s)")
    return value


def _lookup(raw: Any, path: str) -> Any:
    node = raw
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node


def _type_at(at: str, raw: Any = None) -> Any:
    """The declared type at a key path, found by walking the struct types (a tagged union
    is resolved by the ``type`` key found in the raw config at that place)."""
    typ: Any = GatewayConfig
    walked = ""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", at):
        typ = _resolve_tag(_unwrap(typ), _lookup(raw, walked))
        walked = walked + part if part.startswith("[") else _join(walked, part)
        if part.startswith("["):
            args = typing.get_args(typ)
            typ = args[0] if args else Any
            continue
        try:
            fields = msgspec.structs.fields(typ)
        except TypeError:
            return Any
        typ = next((f.type for f in fields if f.name == part), Any)
    if typing.get_origin(typ) is Literal:
        return typ
    return _resolve_tag(_unwrap(typ), _lookup(raw, walked))


def _resolve_tag(typ: Any, node: Any) -> Any:
    members = (
        typing.get_args(typ) if typing.get_origin(typ) in (typing.Union, types.UnionType) else ()
    )
    if not members or not isinstance(node, dict):
        return typ
    for member in members:
        info = getattr(member, "__struct_config__", None)
        if info is not None and info.tag == node.get(info.tag_field):
            return member
    return typ


def _unwrap(typ: Any) -> Any:
    """``X | None`` -> ``X``: the optional part says nothing about what is expected."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return typ


def _known_keys(at: str, raw: dict[str, Any]) -> str:
    try:
        return ", ".join(f.name for f in msgspec.structs.fields(_type_at(at, raw)))
    except TypeError:
        return "?"


def _allowed(at: str, raw: Any) -> str:
    typ = _type_at(at, raw)
    if typing.get_origin(typ) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(typ))
    return "one of the allowed values"


def _kind(v: Any) -> str:
    return type(v).__name__


def _check(cfg: GatewayConfig) -> list[ConfigError]:
    """What types alone cannot say, every problem found (not only the first)."""
    errors: list[ConfigError] = []

    def bad(path: str, message: str) -> None:
        errors.append(ConfigError(path, message))

    names = [p.name for p in cfg.pbx]
    for i, name in enumerate(names):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            bad(f"pbx[{i}].name", f"expected letters, digits, '_', '.', '-', found {name!r}")
        elif names.index(name) != i:
            bad(f"pbx[{i}].name", f"expected a unique name, found {name!r} twice")
    for i, p in enumerate(cfg.pbx):
        if not 0 < p.port < 65536:
            bad(f"pbx[{i}].port", f"expected a TCP port 1-65535, found {p.port}")
        if not p.secret:
            bad(
                f"pbx[{i}].secret",
                "expected the AMI user's secret, found it empty (is AMI_SECRET set to nothing?)",
            )
        if not p.username:
            bad(f"pbx[{i}].username", "expected the AMI user name, found it empty")
        for key in ("ping_interval", "action_timeout", "connect_timeout"):
            value = getattr(p, key)
            if not value > 0:
                bad(f"pbx[{i}].{key}", f"expected a number of seconds > 0, found {value}")
        if not 0 < p.reconnect.initial <= p.reconnect.maximum:
            bad(
                f"pbx[{i}].reconnect",
                "expected 0 < initial <= maximum, found "
                f"initial={p.reconnect.initial} maximum={p.reconnect.maximum}",
            )
    for i, rx in enumerate(cfg.tracking.agent_channels):
        try:
            compiled = re.compile(rx)
        except re.error as e:
            bad(f"tracking.agent_channels[{i}]", f"expected a regex, found {rx!r} ({e})")
            continue
        if "ext" not in compiled.groupindex:
            bad(
                f"tracking.agent_channels[{i}]",
                f"expected a regex with a named group (?P<ext>...), found {rx!r}",
            )
    if not 0 < cfg.agi.port < 65536:
        bad("agi.port", f"expected a TCP port 1-65535, found {cfg.agi.port}")
    if not 0 < cfg.http.port < 65536:
        bad("http.port", f"expected a TCP port 1-65535, found {cfg.http.port}")
    if not cfg.http.header_timeout > 0:
        bad("http.header_timeout", f"expected seconds > 0, found {cfg.http.header_timeout}")
    for key in ("trusted_proxies", "ops_allow"):
        for i, net in enumerate(getattr(cfg.http, key)):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                bad(f"http.{key}[{i}]", f"expected an address or network, found {net!r}")
    if cfg.http.ops_token and len(cfg.http.ops_token) < MIN_TOKEN_LENGTH:
        bad(
            "http.ops_token",
            f"expected at least {MIN_TOKEN_LENGTH} characters, found {len(cfg.http.ops_token)}",
        )
    panel = cfg.panel
    for key in ("login_attempts", "originate_limit", "buffer_size", "max_pending"):
        if getattr(panel, key) < 1:
            bad(f"panel.{key}", f"expected a whole number >= 1, found {getattr(panel, key)}")
    for key in ("session_hours", "login_window", "originate_window", "followup_check_seconds"):
        if not getattr(panel, key) > 0:
            bad(f"panel.{key}", f"expected a number > 0, found {getattr(panel, key)}")
    tokens = [t.token for t in cfg.api.tokens]
    for i, t in enumerate(cfg.api.tokens):
        if len(t.token) < MIN_TOKEN_LENGTH:
            bad(
                f"api.tokens[{i}].token",
                f"expected at least {MIN_TOKEN_LENGTH} random characters (e.g. from "
                f"'openssl rand -hex 24'), found {len(t.token)}",
            )
        elif tokens.index(t.token) != i:
            bad(f"api.tokens[{i}].token", "expected a token of its own, found it shared")
        if not t.scopes:
            bad(f"api.tokens[{i}].scopes", "expected at least one scope, found none")
        for j, scope in enumerate(t.scopes):
            if scope not in API_SCOPES:
                bad(
                    f"api.tokens[{i}].scopes[{j}]",
                    f"expected one of {', '.join(sorted(API_SCOPES))}, found {scope!r}",
                )
    conn_names = [c.name for c in cfg.connectors]
    for i, name in enumerate(conn_names):
        if conn_names.index(name) != i:
            bad(f"connectors[{i}].name", f"expected a unique name, found {name!r} twice")
    if cfg.lookup.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        bad(
            "lookup.default_region",
            f"expected an ISO 3166 region such as ES, US, GB, found {cfg.lookup.default_region!r}",
        )
    _check_campaigns(cfg, bad)
    return errors


def _check_campaigns(cfg: GatewayConfig, bad: Callable[[str, str], None]) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(cfg.campaigns.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        bad(
            "campaigns.default_timezone",
            f"expected an IANA time zone such as Europe/Madrid, "
            f"found {cfg.campaigns.default_timezone!r}",
        )
    for i, hours in enumerate(cfg.campaigns.business_hours):
        if not hours.days:
            bad(f"campaigns.business_hours[{i}].days", "expected at least one day, found none")
        if hours.start >= hours.end:
            bad(
                f"campaigns.business_hours[{i}]",
                f"expected start before end, found {hours.start}-{hours.end}",
            )
    names = [w.name for w in cfg.webhooks]
    for i, hook in enumerate(cfg.webhooks):
        if names.index(hook.name) != i:
            bad(f"webhooks[{i}].name", f"expected a unique name, found {hook.name!r} twice")
        if not re.match(r"^https?://[^/\s]+", hook.url):
            bad(f"webhooks[{i}].url", f"expected an http(s) URL, found {hook.url!r}")
        if not hook.events:
            bad(f"webhooks[{i}].events", "expected at least one event, found none")
