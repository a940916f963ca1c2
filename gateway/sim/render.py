"""Render a scenario as a complete capture stream, byte-compatible with the real ``.ami`` files.

The stream is what the lab capture client received: banner, Login response, FullyBooted,
SuccessfulAuth, the Events response, the call, and the Logoff response. Replay tools and the
call tracker's tests read it exactly like a real capture.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.ami.frames import encode_frame
from gateway.sim.scenarios import (
    DEFAULT_START,
    SCENARIO_NAMES,
    CallIds,
    IdAllocator,
    _compile,
    render_call,
)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
__all__ = ["BANNER", "SCENARIO_NAMES", "event_tv", "render_scenario", "session_header"]


def event_tv(t: float) -> str:
    """Security events' time format: ``2026-11-22T11:18:44.136+0000``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{stamp}.{int(t * 1000) % 1000:03d}+0000"


def session_header(
    start: float, *, uptime: int = 1, username: str = "gateway", remote_port: int = 43772
) -> bytes:
    """Banner, Login response, FullyBooted, SuccessfulAuth and Events response at ``start``."""
    auth_at = start - 0.000562  # the capture's gap between our login and the first event
    tv = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(auth_at))
        + f".{int(auth_at * 1000) % 1000:03d}+0000"
    )
    frames = [
        {"Response": "Success", "ActionID": "gw-1", "Message": "Authentication accepted"},
        {
            "Event": "FullyBooted",
            "Privilege": "system,all",
            "Uptime": str(uptime),
            "LastReload": str(uptime),
            "Status": "Fully Booted",
        },
        {
            "Event": "SuccessfulAuth",
            "Privilege": "security,all",
            "Timestamp": f"{auth_at:.6f}",
            "EventTV": tv,
            "Severity": "Informational",
            "Service": "AMI",
            "EventVersion": "1",
            "AccountID": username,
            "SessionID": "0x7f15840011a0",
            "LocalAddress": "IPV4/TCP/127.0.0.1/5038",
            "RemoteAddress": f"IPV4/TCP/127.0.0.1/{remote_port}",
            "UsingPassword": "0",
            "SessionTV": tv,
        },
        {"Response": "Success", "ActionID": "gw-2", "Events": "On"},
    ]
    return BANNER + b"".join(encode_frame(f) for f in frames)


def render_scenario(
    name: str,
    *,
    start: float = DEFAULT_START,
    flavour: str = "lab",
    first_uid: int = 0,
    first_channel: int = 0,
    **params: Any,
) -> bytes:
    """A whole capture-shaped stream of one call of scenario ``name`` (``\\r\\n`` endings).

    ``params`` are the scenario parameters (see ``scenarios.scenario_params``): caller,
    caller_name, did, agent/agents, queue, ring_seconds, talk_seconds, gateway_call_id...
    ``first_uid``/``first_channel`` start Asterisk's uniqueid and channel-name counters
    (a fresh Asterisk starts both at 0).
    """
    if name not in SCENARIO_NAMES:
        raise ValueError(f"unknown scenario {name!r}, expected one of {SCENARIO_NAMES}")
    ids = CallIds(IdAllocator(first_uid, first_channel))
    frames = render_call(name, start=start, flavour=flavour, ids=ids, **params)
    uptime = _compile(name, flavour).uptime
    body = b"".join(encode_frame(f.headers) for f in frames)
    last_action = 4 if name == "blind_transfer" else 3
    goodbye = encode_frame(
        {
            "Response": "Goodbye",
            "ActionID": f"gw-{last_action}",
            "Message": "Thanks for all the fish.",
        }
    )
    return session_header(start, uptime=uptime) + body + goodbye
