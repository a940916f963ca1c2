"""Generic HTTP connector: a lookup URL that answers JSON, and a POST of each finished call.

For CRMs (or in-house systems) without a connector of their own. The lookup URL is a template
whose placeholders are URL-encoded; the JSON answer is mapped onto the caller card by dotted
paths from config. Call records are POSTed as JSON with an ``Idempotency-Key`` (the record id)
and, when a secret is set, ``X-Centralita-Signature: sha256=<hex>`` = HMAC-SHA256 of the exact
body bytes, plus ``X-Centralita-Timestamp`` (unix seconds).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import msgspec

from connectors.base import RecordRejected
from connectors.callrecord import FinishedCall
from connectors.http_base import HttpCrmConnector
from connectors.numbers import digits_only, national_digits
from connectors.settings import GenericHttpSettings
from connectors.transport import decode_json
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

_KINDS = {k.value: k for k in PersonKind}


def dig(doc: Any, path: str) -> Any:
    """The value at a dotted path (``data.items.0.name``), or None when any step is missing."""
    node = doc
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GenericHttpConnector(HttpCrmConnector[GenericHttpSettings]):
    """Looks callers up and logs calls through two configurable HTTP endpoints."""

    def _base_url(self) -> str:
        return self.settings.lookup_url or self.settings.log_url

    async def lookup(self, e164: str, raw: str) -> CallerCard | None:
        if not self.settings.lookup_url:
            return None
        return await super().lookup(e164, raw)

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        s = self.settings
        url = s.lookup_url.format(
            e164=quote(e164, safe=""),
            digits=quote(digits_only(e164), safe=""),
            national=quote(national_digits(e164), safe=""),
            raw=quote(raw, safe=""),
        )
        status, body = await self._http.request("GET", url, timeout=timeout, headers=s.headers)
        if status == 404:
            return None
        if status >= 300:
            raise ConnectorError(f"{self._http.host}: lookup answered HTTP {status}")
        doc = decode_json(body, self._http.host) if body.strip() else None
        return self._card(e164, doc)

    def _card(self, e164: str, doc: Any) -> CallerCard | None:
        s = self.settings
        match = doc
        if s.results_path:
            found = dig(doc, s.results_path)
            match = found[0] if isinstance(found, list) and found else None
        elif isinstance(doc, list):
            match = doc[0] if doc else None
        if not isinstance(match, dict):
            return None
        values = {k: dig(match, p) for k, p in s.fields.items()}
        name = values.get("display_name")
        if name is None or name == "":
            return None

        def text(key: str) -> str | None:
            v = values.get(key)
            return None if v is None or isinstance(v, dict | list) else str(v)

        score = values.get("lead_score")
        kind = _KINDS.get(str(values.get("kind") or "contact").lower(), PersonKind.CONTACT)
        if kind is PersonKind.UNKNOWN:
            kind = PersonKind.CONTACT
        return CallerCard(
            number=e164,
            kind=kind,
            display_name=str(name),
            company=text("company") or "",
            person_id=text("person_id"),
            account_id=text("account_id"),
            owner=text("owner"),
            lead_status=text("lead_status"),
            lead_score=float(score)
            if isinstance(score, int | float) and not isinstance(score, bool)
            else None,
            source=self.name,
            external_url=text("external_url"),
        )

    async def log_call(self, record: dict[str, object]) -> None:
        """POST the whole record, internal calls included (unlike the CRM connectors)."""
        s = self.settings
        if not s.log_url:
            return
        call = FinishedCall.from_record(record, self._public_url)  # rejects unreadable records
        payload = dict(record)
        if call.recording_url:
            payload["recording_url"] = call.recording_url
        body = msgspec.json.encode(payload)
        headers = {"Content-Type": "application/json", "Idempotency-Key": call.id, **s.headers}
        if s.hmac_secret:
            headers["X-Centralita-Timestamp"] = str(int(self._clock()))
            headers["X-Centralita-Signature"] = sign(s.hmac_secret, body)
        timeout = s.write_timeout_ms / 1000
        async with self._tracked(timeout):
            status, _ = await self._http.request(
                "POST", s.log_url, timeout=timeout, data=body, headers=headers
            )
            if status == 409:  # the receiver already has this record: that is success
                pass
            elif 400 <= status < 500 and status not in (401, 403, 408, 429):
                raise RecordRejected(f"{self._http.host}: call {call.id!r} refused, HTTP {status}")
            elif status >= 300:
                raise ConnectorError(f"{self._http.host}: call log answered HTTP {status}")
