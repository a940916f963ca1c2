"""Turn the real Asterisk captures into the scenario templates the simulator renders.

Developer tool, run once when the captures change::

    python -m gateway.sim.build_templates [tests/data/ami-traces]

It writes ``gateway/sim/templates.py`` from the Local-channel lab captures (the ``lab``
flavour) and ``gateway/sim/templates_pjsip.py`` from the PJSIP captures in
``asterisk-22.10.1-pjsip/`` (the ``pjsip`` flavour): for every scenario, the exact event
sequence of the capture (names, header order, values) with everything that varies per call
replaced by a ``str.format`` field: uniqueids ``{u3}``, channel names ``{ch3}``, bridge ids
``{b0}``, the caller number, caller name, DID, agent extensions, queue name, click-to-call
id, and every time-derived value (Timestamp, CDR times and durations, queue hold/ring/talk
times, Dial timing variables, security EventTV, RTCP SentNTP). ``scenarios.py`` fills the
fields from the scenario parameters.

Noise that has nothing to do with the call's progress (RTCP reports every 5 s, a handset
re-registering) never opens a burst of its own: it rides on the burst before it, so that a
re-timed call keeps it where it was or, when a shorter phase leaves no room, drops it.

Why templates rather than hand-written generators: the real stream's order is Asterisk's
thread interleaving, which no model reproduces; copying it keeps the simulator honest.
"""

from __future__ import annotations

import calendar
import json
import re
import sys
import time
from pathlib import Path

from gateway.ami.frames import AmiFrame, iter_capture
from gateway.sim.state import SNAPSHOT_KEYS
from gateway.sim.template_layout import ScenarioTemplate, TemplateChannel, TemplateEvent

SCENARIOS = (
    "inbound_answered",
    "inbound_missed_noanswer",
    "inbound_busy",
    "inbound_caller_abandons",
    "queue_answered",
    "queue_abandoned",
    "click_to_call",
    "click_to_call_agent_noanswer",
    "click_to_call_agent_busy",
    "blind_transfer",
)
PJSIP_SCENARIOS = (
    *SCENARIOS,
    "inbound_hold_resume",
    "click_to_call_customer_noanswer",
)
PJSIP_DIR = "asterisk-22.10.1-pjsip"
# events unrelated to the call's progress: they never mark a burst (see the module docstring)
NOISE_EVENTS = frozenset({"RTCPSent", "RTCPReceived", "ChallengeSent", "SuccessfulAuth"})

CALLER = "+34911234567"
DID = "5551000"
AGENTS = ("101", "102")
QUEUE = "sales"
BURST_GAP = 0.15  # seconds of silence that separate two bursts of a capture

_LOCAL = re.compile(r"Local/([^\s,;@/]+)@([a-z-]+)-([0-9a-f]{8});([12])")
_LOCAL_BASE = re.compile(r"Local/([^\s,;@/]+)@(agents|from-pstn|pstn-customers)(/n)?(?![-\w])")
_DIALSTRING = re.compile(r"^([^\s,;@/]+)@(agents|from-pstn|pstn-customers)(/n)?$")
_UID = re.compile(r"\b\d{10}\.\d+\b")
_PJSIP = re.compile(r"PJSIP/([\w]+)-([0-9a-f]{8})")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SNAPSHOT_KEYS = frozenset(SNAPSHOT_KEYS)
_DURATION_VARS = ("ANSWEREDTIME", "DIALEDTIME", "RINGTIME", "PROGRESSTIME")
_CDR_TIME = "%Y-%m-%d %H:%M:%S"


def _field(*parts: object) -> str:
    """A format field, e.g. ``_field("u", 3)`` -> ``"{u3}"``, ``_field("d_", 5, "_", 1)``."""
    return "{" + "".join(str(p) for p in parts) + "}"


def _token(text: str, word: str, field: str) -> str:
    return re.sub(r"(?<![\w+])" + re.escape(word) + r"(?![\w])", _field(field), text)


class _Builder:
    def __init__(self, name: str, frames: list[AmiFrame]) -> None:
        self.name = name
        start = next(i for i, f in enumerate(frames) if f.get("Events") == "On") + 1
        end = max(i for i, f in enumerate(frames) if f.get("Response") == "Goodbye")
        self.frames = frames[start:end]
        self.uptime = int(frames[1]["Uptime"])
        self.login_time = next((f["LoginTime"] for f in self.frames if "LoginTime" in f), None)
        self._bursts()
        self._channels()
        self.bridges: dict[str, int] = {}
        self.hold_time = "0"
        self.gwid = ""
        for f in self.frames:
            for v in f.values():
                m = re.search(r"GATEWAY_CALL_ID=(gw-c2c-\d+)", v)
                if m:
                    self.gwid = m.group(1)
            if f.get("Variable") == "GATEWAY_CALL_ID" and f.get("Value"):
                self.gwid = f["Value"]

    # --- timeline ---------------------------------------------------------------------
    def _bursts(self) -> None:
        """Group events into bursts (Asterisk reacts to one stimulus in a few ms)."""
        self.t0 = next(float(f["Timestamp"]) for f in self.frames if "Timestamp" in f)
        self.bursts: list[float] = []
        self.timing: list[tuple[int, float]] = []
        top = None
        for f in self.frames:
            ts = f.get("Timestamp")
            if ts is None:  # a response: it rides with the burst it arrived in
                k = max(len(self.bursts) - 1, 0)
                self.timing.append((k, 0.0))
                continue
            t = float(ts) - self.t0
            if f.get("Event") in NOISE_EVENTS and self.bursts:
                k = len(self.bursts) - 1
                self.timing.append((k, t - self.bursts[k]))
                continue
            if top is None or t - top > BURST_GAP:
                self.bursts.append(t)
                top = t
            top = max(top, t)
            k = len(self.bursts) - 1
            self.timing.append((k, t - self.bursts[k]))
        if not self.bursts:
            self.bursts = [0.0]

    def _burst_near(self, rel: float) -> int:
        return min(range(len(self.bursts)), key=lambda k: abs(self.bursts[k] - rel))

    def _burst_of_second(self, epoch: int) -> tuple[int, int]:
        """The burst an integer wall-clock second belongs to, and the offset in seconds."""
        same = [k for k, b in enumerate(self.bursts) if int(self.t0 + b) == epoch]
        if same:
            return same[-1], 0
        k = self._burst_near(epoch + 0.5 - self.t0)
        return k, epoch - int(self.t0 + self.bursts[k])

    # --- channels ---------------------------------------------------------------------
    def _channels(self) -> None:
        """Symbolic channels, numbered in creation (uniqueid) order."""
        seen: dict[str, str] = {}
        for f in self.frames:
            if f.get("Event") == "Newchannel":
                seen[f["Uniqueid"]] = f["Channel"]
        order = sorted(seen, key=lambda u: int(u.split(".")[1]))
        self.uid_index = {u: i for i, u in enumerate(order)}
        self.chan_index = {seen[u]: i for i, u in enumerate(order)}
        pairs: dict[str, int] = {}
        self.channels: list[TemplateChannel] = []
        for u in order:
            m = _LOCAL.fullmatch(seen[u])
            assert m, seen[u]
            exten, context, seq, half = m.groups()
            pair = pairs.setdefault(seq, len(pairs))
            if context == "agents":
                role = f"a{AGENTS.index(exten)}"
            elif context == "from-pstn":
                role = "in"
            else:
                role = "cust"
            first = next(
                i
                for i, f in enumerate(self.frames)
                if f.get("Uniqueid") == u or f.get("UniqueID") == u
            )
            self.channels.append({"role": role, "half": int(half), "pair": pair, "first": first})

    # --- values -----------------------------------------------------------------------
    def _text(self, value: str) -> str:
        v = value.replace("{", "{{").replace("}", "}}")
        v = _UUID.sub(self._bridge, v)
        v = _LOCAL.sub(lambda m: _field("ch", self.chan_index[m.group(0)]), v)
        v = _UID.sub(lambda m: _field("u", self.uid_index[m.group(0)]), v)
        v = _LOCAL_BASE.sub(self._base, v)
        m = _DIALSTRING.match(v)
        if m:
            prefix = "dsn" if m.group(3) else "ds"
            v = _field(prefix, "_", self._role(m.group(1), m.group(2)))
        return _people(v, self.gwid, self.name)

    def _bridge(self, m: re.Match[str]) -> str:
        return _field("b", self.bridges.setdefault(m.group(0), len(self.bridges)))

    @staticmethod
    def _role(exten: str, context: str) -> str:
        if context == "agents":
            return f"a{AGENTS.index(exten)}"
        return "in" if context == "from-pstn" else "cust"

    def _base(self, m: re.Match[str]) -> str:
        role = self._role(m.group(1), m.group(2))
        return _field("if_" if m.group(3) else "dial_", role)

    def _duration(self, i: int, value: str, ms: bool) -> str:
        """A duration that ends at event ``i``: which bursts it spans, and its capture value."""
        k2, _ = self.timing[i]
        rel = self.bursts[k2] + self.timing[i][1]
        k1 = self._burst_near(rel - int(value) / (1000 if ms else 1))
        if ms:
            return _field(f"m_{value}_{k1}_{k2}")
        return self._seconds(value, k1, k2, rel)

    def _seconds(self, value: str, k1: int, k2: int, end: float) -> str:
        """Whole seconds truncated from an exact span: keep the span's fraction (in ms) so
        that a re-timed call truncates like Asterisk does (billsec 4.999 s -> 4)."""
        frac = end - self.bursts[k1] - int(value)
        frac_ms = round(frac * 1000) if -0.05 <= frac < 1.0 else 500
        return _field(f"d_{value}_{k1}_{k2}_{min(max(frac_ms, 0), 999)}")

    def _cdr_time(self, value: str) -> tuple[str, int | None]:
        if not value:
            return "", None
        epoch = calendar.timegm(time.strptime(value, _CDR_TIME))
        k, off = self._burst_of_second(epoch)
        return _field(f"t_{k}_{off}"), k

    def event(self, i: int, f: AmiFrame) -> list[list[str]]:
        ev = f.get("Event", "")
        out: list[list[str]] = []
        cdr_k: dict[str, int | None] = {}
        if ev == "Cdr":
            for key in ("StartTime", "AnswerTime", "EndTime"):
                cdr_k[key] = self._cdr_time(f[key])[1]
        for key, value in f.items():
            if key == "Timestamp":
                v = "{ts}"
            elif key in ("EventTV", "SessionTV"):
                v = "{tv}"
            elif key == "SentNTP":
                # the report's NTP stamp, a few µs before the event's Timestamp
                lag = round((float(f["Timestamp"]) - float(value)) * 1e6)
                v = _field(f"n_{max(lag, 0)}")
            elif self._literal(ev, key, f):
                v = value.replace("{", "{{").replace("}", "}}")
            elif ev == "CEL" and key == "EventTime":
                v = "{et}"
            elif ev == "Cdr" and key in cdr_k:
                v = self._cdr_time(value)[0]
            elif ev == "Cdr" and key in ("Duration", "BillableSeconds"):
                k1 = cdr_k["StartTime" if key == "Duration" else "AnswerTime"]
                k2 = cdr_k["EndTime"]
                end = self.bursts[self.timing[i][0]] + self.timing[i][1]
                v = value if k1 is None or k2 is None else self._seconds(value, k1, k2, end)
            elif ev == "AgentComplete" and key == "HoldTime":
                # the hold before the agent answered, carried over from AgentConnect
                v = self.hold_time
            elif key in ("HoldTime", "RingTime", "TalkTime") and ev != "QueueParams":
                v = self._duration(i, value, ms=False)
            elif (
                ev == "VarSet"
                and key == "Value"
                and value
                and f["Variable"].startswith(_DURATION_VARS)
            ):
                v = self._duration(i, value, ms=f["Variable"].endswith("_MS"))
            elif key == "LastCall" and value != "0":
                k, off = self._burst_of_second(int(value))
                v = _field(f"e_{k}_{off}")
            elif key == "LoginTime":
                v = "{login_time}"
            elif key == "ActionID" and value in ("orig-1", "c2c-1"):
                v = "{action_id}"
            elif key == "ActionID":
                v = "{transfer_action_id}"
            else:
                v = self._text(value)
            if key.endswith(("CallerIDName", "ConnectedLineName")) and v == "<unknown>":
                num = f.get(key[: -len("Name")] + "Num")
                if num == CALLER:
                    v = "{cname_u}"
            elif key == "CallerIDname" and v == "" and f.get("CallerIDnum") == CALLER:
                v = "{cname}"
            elif v == "Click-to-call":
                v = "{cname_u}" if key.endswith("Name") else "{cname}"
            if ev == "AgentConnect" and key == "HoldTime":
                self.hold_time = v
            out.append([key, v])
        return out

    @staticmethod
    def _literal(ev: str, key: str, f: AmiFrame) -> bool:
        """Media statistics: copied as captured (an extension-like number in a packet count
        is a coincidence, not an agent)."""
        if ev.startswith("RTCP"):
            return key not in _SNAPSHOT_KEYS
        return ev == "VarSet" and key == "Value" and f.get("Variable", "").startswith("RTPAUDIO")

    def build(self) -> ScenarioTemplate:
        events: list[TemplateEvent] = []
        for i, f in enumerate(self.frames):
            k, delta = self.timing[i]
            kind = "event" if "Event" in f else "response"
            events.append((k, round(delta, 6), kind, self.event(i, f)))
        return {
            "bursts": [round(b, 6) for b in self.bursts],
            "channels": self.channels,
            "bridges": len(self.bridges),
            "uptime": self.uptime,
            "events": events,
        }


class _PjsipBuilder(_Builder):
    """A capture of the PJSIP lab: one channel per leg, ``PJSIP/<endpoint>-<counter>``."""

    def _channels(self) -> None:
        created: dict[str, AmiFrame] = {}
        for f in self.frames:
            if f.get("Event") == "Newchannel":
                created[f["Uniqueid"]] = f
        order = sorted(created, key=lambda u: int(u.split(".")[1]))
        self.uid_index = {u: i for i, u in enumerate(order)}
        self.chan_index = {created[u]["Channel"]: i for i, u in enumerate(order)}
        self.channels = []
        for i, u in enumerate(order):
            f = created[u]
            m = _PJSIP.fullmatch(f["Channel"])
            assert m, f"{self.name}: not a PJSIP leg: {f['Channel']}"
            endpoint = m.group(1)
            if endpoint in AGENTS:
                role = f"a{AGENTS.index(endpoint)}"
            else:  # the trunk: a carrier call rings in, a click-to-call customer is dialled out
                role = "in" if f["ChannelStateDesc"] == "Ring" else "cust"
            first = next(
                j
                for j, g in enumerate(self.frames)
                if g.get("Uniqueid") == u or g.get("UniqueID") == u
            )
            self.channels.append({"role": role, "half": 0, "pair": i, "first": first})

    def _text(self, value: str) -> str:
        v = value.replace("{", "{{").replace("}", "}}")
        v = _UUID.sub(self._bridge, v)
        v = _PJSIP.sub(lambda m: _field("ch", self.chan_index[m.group(0)]), v)
        v = _UID.sub(lambda m: _field("u", self.uid_index[m.group(0)]), v)
        v = v.replace("PJSIP/trunk", "PJSIP/{trunk}").replace("@trunk", "@{trunk}")
        return _people(v, self.gwid, self.name)


def build(trace_dir: Path, flavour: str = "lab") -> dict[str, ScenarioTemplate]:
    """Every scenario's template from the captures of one flavour (``lab`` or ``pjsip``)."""
    out = {}
    names: tuple[str, ...] = SCENARIOS
    builder: type[_Builder] = _Builder
    if flavour == "pjsip":
        names, builder, trace_dir = PJSIP_SCENARIOS, _PjsipBuilder, trace_dir / PJSIP_DIR
    for name in names:
        _, frames = iter_capture((trace_dir / f"{name}.ami").read_bytes())
        out[name] = builder(name, frames).build()
    return out


def _event_literal(ev: TemplateEvent) -> str:
    """A tuple literal (the layout's ``TemplateEvent``), values spelled as JSON would."""
    burst, delta, kind, headers = ev
    pairs = json.dumps(headers, ensure_ascii=False)
    return f"({burst}, {json.dumps(delta)}, {json.dumps(kind)}, {pairs})"


_TARGETS = {
    "lab": ("templates.py", "TEMPLATES", "the Asterisk 22.10.1 captures"),
    "pjsip": ("templates_pjsip.py", "PJSIP_TEMPLATES", "the Asterisk 22.10.1 PJSIP captures"),
}


def write(data: dict[str, ScenarioTemplate], flavour: str) -> Path:
    """Write one flavour's generated module; same captures, same bytes."""
    filename, var, source = _TARGETS[flavour]
    target = Path(__file__).with_name(filename)
    lines = [
        "# ruff: noqa: E501",
        f'"""Scenario templates generated from {source}.',
        "",
        "Generated by ``python -m gateway.sim.build_templates``; do not edit by hand.",
        "Layout per scenario: bursts (capture offsets in s), channels (role, Local half,",
        "Local pair, index of first event), bridges, uptime, events",
        "(burst, delta s, kind, [[header, format-string value], ...]); see template_layout.py.",
        '"""',
        "",
        "from gateway.sim.template_layout import ScenarioTemplate",
        "",
        "# fmt: off",
        f"{var}: dict[str, ScenarioTemplate] = {{",
    ]
    for name, tpl in data.items():
        lines.append(f"    {name!r}: {{")
        for key in ("bursts", "channels", "bridges", "uptime"):
            lines.append(f"        {key!r}: {json.dumps(tpl[key])},")
        lines.append("        'events': [")
        lines.extend(f"            {_event_literal(ev)}," for ev in tpl["events"])
        lines.append("        ],")
        lines.append("    },")
    lines += ["}", "# fmt: on", ""]
    target.write_text("\n".join(lines))
    return target


def _people(v: str, gwid: str, scenario: str) -> str:
    """The values every flavour turns into fields: call id, caller, DID, agents, queue."""
    if gwid:
        v = v.replace(gwid, "{gwid}")
    v = v.replace('"" <' + CALLER + ">", '"{cname}" <' + CALLER + ">")
    v = v.replace('"Click-to-call" <', '"{cname}" <')
    v = _token(v, CALLER, "caller")
    v = _token(v, DID, "did")
    for i, a in enumerate(AGENTS):
        v = _token(v, a, f"a{i}")
    v = _token(v, QUEUE, "queue")
    return v.replace("scenario=" + scenario, "scenario={scenario}")


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[2] / "tests" / "data" / "ami-traces"
    trace_dir = Path(argv[1]) if len(argv) > 1 else default
    for flavour in _TARGETS:
        target = write(build(trace_dir, flavour), flavour)
        print(f"wrote {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
