"""Typed configuration: one YAML file, ``${ENV}`` secrets, errors that name the key and the fix.

``load_config(path)`` reads YAML with ``safe_load``, substitutes ``${VAR}`` from the
environment, converts to frozen structs with msgspec, then checks what types alone cannot
(unique names, existing paths, valid regexes). Every problem is a ``ConfigError`` whose text
reads ``<key path>: expected <what>, found <what>``.
"""

from __future__ import annotations

import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from connectors.settings import ConnectorSettings
from gateway.calls.settings import TrackingSettings
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


class StoreSettings(_Section):
    path: str = "state/centralita.db"


class RecordingSettings(_Section):
    directory: str = "/var/spool/asterisk/monitor"


class ApiToken(_Section, kw_only=True):
    name: str
    token: str
    scopes: list[str] = msgspec.field(default_factory=lambda: ["*"])

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, scopes={self.scopes!r})"


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
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    demo: DemoSettings = msgspec.field(default_factory=DemoSettings)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate a config file; raises ConfigError naming the offending key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {e.strerror}") from e
    return parse_config(text, env=env, source=str(p))


def parse_config(
    text: str, env: dict[str, str] | None = None, source: str = "<config>"
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
    raw = _substitute_env(raw, os.environ if env is None else env, "")
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> GatewayConfig:
    try:
        cfg = msgspec.convert(raw, GatewayConfig, strict=True)
    except msgspec.ValidationError as e:
        raise _explain(e, raw) from e
    _check(cfg)
    return cfg


def _substitute_env(node: Any, env: Any, path: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute_env(v, env, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return str(env[name])
            if default is not None:
                return default
            raise ConfigError(
                path,
                f"expected environment variable {name} to be set (referenced as ${{{name}}}), "
                f"found it unset; export {name}=... or write ${{{name}:-default}}",
            )

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


def _check(cfg: GatewayConfig) -> None:
    names = [p.name for p in cfg.pbx]
    for i, name in enumerate(names):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ConfigError(
                f"pbx[{i}].name", f"expected letters, digits, '_', '.', '-', found {name!r}"
            )
        if names.index(name) != i:
            raise ConfigError(f"pbx[{i}].name", f"expected a unique name, found {name!r} twice")
    for i, p in enumerate(cfg.pbx):
        if not 0 < p.port < 65536:
            raise ConfigError(f"pbx[{i}].port", f"expected a TCP port 1-65535, found {p.port}")
        if p.ping_interval <= 0:
            raise ConfigError(f"pbx[{i}].ping_interval", f"expected > 0, found {p.ping_interval}")
        if p.reconnect.initial <= 0 or p.reconnect.maximum < p.reconnect.initial:
            raise ConfigError(
                f"pbx[{i}].reconnect",
                "expected 0 < initial <= maximum, found "
                f"initial={p.reconnect.initial} maximum={p.reconnect.maximum}",
            )
    for i, rx in enumerate(cfg.tracking.agent_channels):
        try:
            compiled = re.compile(rx)
        except re.error as e:
            raise ConfigError(
                f"tracking.agent_channels[{i}]", f"expected a regex, found {rx!r} ({e})"
            ) from e
        if "ext" not in compiled.groupindex:
            raise ConfigError(
                f"tracking.agent_channels[{i}]",
                f"expected a regex with a named group (?P<ext>...), found {rx!r}",
            )
    if not 0 <= cfg.agi.port < 65536:
        raise ConfigError("agi.port", f"expected a TCP port 1-65535, found {cfg.agi.port}")
    if not 0 < cfg.http.port < 65536:
        raise ConfigError("http.port", f"expected a TCP port 1-65535, found {cfg.http.port}")
    conn_names = [c.name for c in cfg.connectors]
    for i, name in enumerate(conn_names):
        if conn_names.index(name) != i:
            raise ConfigError(
                f"connectors[{i}].name", f"expected a unique name, found {name!r} twice"
            )
    try:
        import phonenumbers

        if cfg.lookup.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(
                "lookup.default_region",
                f"expected an ISO 3166 region such as ES, US, GB, found "
                f"{cfg.lookup.default_region!r}",
            )
    except ImportError:  # pragma: no cover - phonenumbers is a hard dependency
        pass
