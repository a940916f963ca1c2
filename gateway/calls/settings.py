"""How channels map to extensions and calls to directions: the ``tracking:`` config section."""

from __future__ import annotations

import msgspec


class TrackingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Defaults fit a usual PJSIP setup; the lab in ``ami-traces/`` needs
    ``agent_contexts: [agents]`` and ``inbound_contexts: [from-pstn]``."""

    # regexes with a named group ``ext``, tried in order on a channel name
    agent_channels: list[str] = msgspec.field(
        default_factory=lambda: [r"^(?:PJSIP|SIP|IAX2)/(?P<ext>\d{2,6})-[0-9a-fA-F]+$"]
    )
    # Local/<ext>@<context> channels in these contexts are agent phones (Local-channel setups)
    agent_contexts: list[str] = msgspec.field(default_factory=list)
    # dialplan contexts where calls from outside arrive (their Exten is the DID)
    inbound_contexts: list[str] = msgspec.field(
        default_factory=lambda: ["from-pstn", "from-trunk", "from-external"]
    )
    # the context the gateway's click-to-call Originate sends the agent leg to
    click_to_call_context: str = "outbound"
    # channel variable the gateway sets on its own Originate to recognise its calls
    call_id_variable: str = "GATEWAY_CALL_ID"
    # a stream that never sends Hangup must not grow memory without bound
    max_open_calls: int = 10000
