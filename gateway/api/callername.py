"""``GET /api/v1/callername?number=…``: the caller's name as plain text, for Asterisk's CURL().

The HTTP variant of the FastAGI caller-name service (``dialplan/centralita-http.conf``). Its
point is who bounds the wait: with FastAGI the call waits in ``AGI()`` for as long as the
gateway's socket stays open, so a frozen gateway freezes every inbound call (8.6 s in a live
test); with ``func_curl`` Asterisk itself gives up after ``CURLOPT(conntimeout)`` /
``CURLOPT(httptimeout)`` and the call goes on with the number only.

The answer is the body, ready for ``Set(CALLERID(name)=${CURL(...)})``: printable characters
only (no control characters, quotes or backslashes), whitespace collapsed, at most
``NAME_MAX`` characters; empty when the caller is unknown, the number is unusable or the
lookup takes longer than ``agi.time_limit_ms``. It is cheap: the lookup chain answers from the
store and the directory in microseconds, and a CRM is never waited on beyond the limit.

Protected like the rest of ``/api/v1``: a token with the ``lookup`` scope, sent by Asterisk
with ``CURLOPT(httpheader)=Authorization: Bearer …``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.api import keys
from gateway.api.auth import require
from gateway.api.params import query_as
from gateway.errors import ApiError
from gateway.metrics import LOOKUP_SECONDS

log = logging.getLogger("gateway.api")

NAME_MAX = 60  # what a phone display shows; CALLERID(name) itself takes more
NUMBER_MAX = 40
_NUMBER = re.compile(r"^\+?[0-9 ().\-]{1,40}$")  # what a trunk sends as the caller's number


def caller_name_text(name: str) -> str:
    """``name`` as it may go into CALLERID(name): printable, one line, bounded."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in name
        if (ch.isprintable() or ch.isspace()) and ch not in '"\\'
    )
    return re.sub(r"\s+", " ", kept).strip()[:NAME_MAX].rstrip()


class CallerNameQuery(msgspec.Struct, forbid_unknown_fields=True):
    number: Annotated[str, Meta(max_length=40, description="as received; may be empty")] = ""


async def caller_name(request: web.Request) -> web.Response:
    require(request, "lookup")
    try:
        number = query_as(request, CallerNameQuery).number.strip()
    except ApiError as e:  # Asterisk's CURL() would show any body as the caller's name
        log.warning("callername: refused query %r: %s", request.query_string[:200], e.message)
        return web.Response(status=e.status, text="", content_type="text/plain")
    text = ""
    if _NUMBER.match(number):
        limit_ms = request.app[keys.CONFIG].agi.time_limit_ms
        started = time.perf_counter()
        try:
            card = await asyncio.wait_for(request.app[keys.LOOKUP].lookup(number), limit_ms / 1000)
        except TimeoutError:
            log.warning("callername: lookup of %r over %d ms", number, limit_ms)
        else:
            if card.known:
                name = card.display_name
                if card.company and card.company not in name:
                    name = f"{name} ({card.company})" if name else card.company
                text = caller_name_text(name)
        finally:
            LOOKUP_SECONDS.labels("callername_http").observe(time.perf_counter() - started)
    # text/plain, no charset games: Asterisk stores the bytes as they come
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def routes() -> list[web.RouteDef]:
    """The route to add to the application (``app.router.add_routes(callername.routes())``)."""
    return [web.get("/api/v1/callername", caller_name)]
