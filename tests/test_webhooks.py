"""Outgoing webhooks against real HTTP receivers on loopback: signed, only the events each
target asked for, retried with backoff, and durable across a gateway restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.campaigns.settings import WebhookSettings
from gateway.config import GatewayConfig
from gateway.store.events import LeadUnsubscribed
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from tests.test_panel_support import ended, make_config

SECRET = "shared-webhook-secret"
T0 = 1_800_000_000.0


class Receiver:
    """An HTTP endpoint that records what it is sent and answers the statuses it is told."""

    def __init__(
        self,
        statuses: list[int] | None = None,
        answer: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])  # answered in turn, then 200
        self.answer = answer  # or: the status for each document
        self.changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.changed:
            self.posts.append((dict(request.headers), body))
            self.changed.notify_all()
        if self.answer is not None:
            return web.Response(status=self.answer(json.loads(body)))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.posts) >= n), timeout)

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]


def verified(headers: dict[str, str], body: bytes, secret: str = SECRET) -> dict[str, Any]:
    """The document, after checking the signature the way a receiver would."""
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Centralita-Signature"], want)
    assert headers["X-Centralita-Timestamp"].isdigit()
    doc: dict[str, Any] = json.loads(body)
    assert headers["Idempotency-Key"] == doc["id"]
    assert headers["X-Centralita-Event"] == doc["type"]
    return doc


def config(tmp_path: Path, hooks: list[WebhookSettings]) -> GatewayConfig:
    return msgspec.structs.replace(make_config(tmp_path), webhooks=hooks)


async def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async def poll() -> None:
        # the condition is the store's state, which has no event to wait on
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def outbox_rows(gw: Gateway) -> list[Any]:
    assert gw.db is not None
    return list(
        await gw.db.conn.execute_fetchall(
            "SELECT connector, attempts, delivered_at FROM crm_outbox"
            " WHERE connector LIKE 'webhook:%' ORDER BY id"
        )
    )


async def test_each_target_receives_only_its_events_signed(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    crm, mailer = Receiver(), Receiver()
    crm_server = await aiohttp_server(crm.app)
    mail_server = await aiohttp_server(mailer.app)
    hooks = [
        WebhookSettings(
            name="crm",
            url=f"http://127.0.0.1:{crm_server.port}/hook",
            secret=SECRET,
            events=["lead.status_changed", "lead.converted", "call.ended"],
        ),
        WebhookSettings(
            name="mailing",
            url=f"http://127.0.0.1:{mail_server.port}/hook",
            events=["lead.unsubscribed"],
        ),
    ]
    gw = Gateway(config(tmp_path, hooks))
    await gw.start()
    try:
        assert gw.db is not None
        people = PersonRepository(gw.db)
        lead = (
            await people.create(PersonType.LEAD, {"name": "Eva", "phone": "+34600111222"})
        ).person
        await people.update(lead.id, {"status": "lost", "lost_reason": "competitor"})
        gw.bus.publish(LeadUnsubscribed(lead.id, "eva@example.com", T0, "one_click", 3))
        gw.bus.publish(ended("1795346400.1", ["101"], "101"))
        await crm.wait_for(2)
        await mailer.wait_for(1)
        assert gw.webhooks is not None
        await gw.webhooks.flush()
        await wait_until(lambda: _all_delivered(gw))
    finally:
        await gw.stop()
    docs = [verified(h, b) for h, b in crm.posts]
    assert [d["type"] for d in docs] == ["lead.status_changed", "call.ended"]
    status = docs[0]["data"]
    assert (status["person_id"], status["old"], status["new"]) == (lead.id, "new", "lost")
    assert status["lost_reason"] == "competitor" and status["actor"] == "system"
    assert docs[1]["data"]["id"] == "sim:1795346400.1"
    assert docs[1]["data"]["answered_by"] == "101"
    # the mailing system gets the unsubscribe and nothing else; no secret, no signature
    ((headers, body),) = mailer.posts
    assert "X-Centralita-Signature" not in headers
    doc = json.loads(body)
    assert doc["type"] == "lead.unsubscribed"
    assert doc["data"] == {
        "person_id": lead.id,
        "email": "eva@example.com",
        "method": "one_click",
        "campaign_id": 3,
        "at": T0,
    }
    assert headers["Idempotency-Key"] == doc["id"]
    assert len({d["id"] for d in [*docs, doc]}) == 3


async def _all_delivered(gw: Gateway) -> bool:
    return all(r["delivered_at"] is not None for r in await outbox_rows(gw))


async def test_a_failing_target_is_retried_with_backoff_and_gets_it_once(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    receiver = Receiver(statuses=[503, 500])
    server = await aiohttp_server(receiver.app)
    hooks = [WebhookSettings(name="crm", url=f"http://127.0.0.1:{server.port}/hook", secret=SECRET)]
    now = [T0]
    gw = Gateway(config(tmp_path, hooks), clock=lambda: now[0])
    await gw.start()
    try:
        assert gw.db is not None and gw.webhooks is not None
        people = PersonRepository(gw.db)
        lead = (
            await people.create(PersonType.LEAD, {"name": "Leo", "phone": "+34600222333"})
        ).person
        await people.update(lead.id, {"status": "contacted"})
        await receiver.wait_for(1)  # the worker's first attempt: 503
        await wait_until(lambda: _attempts(gw, 1))
        now[0] += 4.9
        assert await gw.webhooks.deliver_due() == 0  # not due again before its backoff (5 s)
        assert len(receiver.posts) == 1
        now[0] += 0.1
        gw.webhooks.kick()  # what the worker's own timer does in real time
        await receiver.wait_for(2)  # 500
        await wait_until(lambda: _attempts(gw, 2))
        now[0] += 9.9
        assert await gw.webhooks.deliver_due() == 0  # the second retry waits 10 s
        assert len(receiver.posts) == 2
        now[0] += 0.1
        gw.webhooks.kick()
        await receiver.wait_for(3)  # 200
        await wait_until(lambda: _all_delivered(gw))
        now[0] += 3600
        assert await gw.webhooks.deliver_due() == 0  # delivered is delivered
    finally:
        await gw.stop()
    docs = [verified(h, b) for h, b in receiver.posts]
    assert len(docs) == 3 and len({d["id"] for d in docs}) == 1  # one event, three attempts
    assert docs[0]["data"]["new"] == "contacted"


async def _attempts(gw: Gateway, n: int) -> bool:
    rows = await outbox_rows(gw)
    return bool(rows) and rows[0]["attempts"] >= n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_event_for_a_target_that_is_down_survives_a_restart(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    hooks = [WebhookSettings(name="crm", url=f"http://127.0.0.1:{port}/hook", secret=SECRET)]
    cfg = config(tmp_path, hooks)
    gw = Gateway(cfg, clock=lambda: T0)
    await gw.start()
    assert gw.db is not None
    people = PersonRepository(gw.db)
    lead = (await people.create(PersonType.LEAD, {"name": "Iris", "phone": "+34600333444"})).person
    await people.update(lead.id, {"status": "won"})
    await wait_until(lambda: _attempts(gw, 1))  # tried, refused, waiting for its retry
    await gw.stop()

    receiver = await restarted_with_target(aiohttp_server, cfg, port, 1)
    ((headers, body),) = receiver.posts  # once
    doc = verified(headers, body)
    assert doc["type"] == "lead.status_changed" and doc["data"]["new"] == "won"
    assert doc["data"]["person_id"] == lead.id


async def restarted_with_target(
    aiohttp_server: Any, cfg: GatewayConfig, port: int, posts: int
) -> Receiver:
    """The target comes back on ``port`` and a new process starts, past the backoff; returns
    the target once it has ``posts`` POSTs, everything is delivered and nothing is left due."""
    receiver = Receiver()
    await aiohttp_server(receiver.app, port=port)
    later = Gateway(cfg, clock=lambda: T0 + 60)
    await later.start()
    try:
        await receiver.wait_for(posts)
        await wait_until(lambda: _all_delivered(later))
        assert later.webhooks is not None
        assert await later.webhooks.deliver_due() == 0
    finally:
        await later.stop()
    return receiver


async def test_a_clean_stop_stores_events_not_yet_written(tmp_path: Path) -> None:
    hooks = [
        WebhookSettings(name="crm", url="http://127.0.0.1:9/hook", events=["lead.unsubscribed"])
    ]
    gw = Gateway(config(tmp_path, hooks), clock=lambda: T0)
    await gw.open()  # never started: no writer task, no worker
    for i in range(3):
        gw.bus.publish(LeadUnsubscribed(i + 1, f"x{i}@example.com", T0, "api"))
    await gw.stop()
    later = Gateway(config(tmp_path, hooks), clock=lambda: T0)
    await later.open()
    try:
        rows = await outbox_rows(later)
        assert [(r["connector"], r["delivered_at"]) for r in rows] == [("webhook:crm", None)] * 3
    finally:
        await later.stop()


@pytest.mark.parametrize("status", [400, 422])
async def test_a_refused_event_is_parked_and_the_next_goes_on(
    aiohttp_server: Any, tmp_path: Path, status: int
) -> None:
    receiver = Receiver(answer=lambda doc: status if doc["data"]["new"] == "contacted" else 200)
    server = await aiohttp_server(receiver.app)
    hooks = [WebhookSettings(name="crm", url=f"http://127.0.0.1:{server.port}/hook")]
    now = [T0]
    gw = Gateway(config(tmp_path, hooks), clock=lambda: now[0])
    await gw.start()
    try:
        assert gw.db is not None and gw.webhooks is not None
        people = PersonRepository(gw.db)
        lead = (
            await people.create(PersonType.LEAD, {"name": "Max", "phone": "+34600444555"})
        ).person
        await people.update(lead.id, {"status": "contacted"})
        await people.update(lead.id, {"status": "qualified"})
        # the first is refused; the one behind it does not wait for it
        await receiver.wait_for(2)
        for n in (3, 4):  # refused twice more after its backoff, then parked
            now[0] += 60
            gw.webhooks.kick()
            await receiver.wait_for(n)
        await wait_until(lambda: _parked_and_delivered(gw))
        now[0] += 3600
        assert await gw.webhooks.deliver_due() == 0  # parked: not tried again
        # /health shows the target's queue beside the CRMs'
        (queue,) = [q for q in await gw.outbox_health() if q["connector"] == "webhook:crm"]
        assert (queue["pending"], queue["delivered"], queue["parked"]) == (0, 1, 1)
        assert str(status) in (queue["last_error"] or "")
    finally:
        await gw.stop()
    docs = [json.loads(b) for _, b in receiver.posts]
    assert [d["data"]["new"] for d in docs] == ["contacted", "qualified", "contacted", "contacted"]


async def _parked_and_delivered(gw: Gateway) -> bool:
    assert gw.db is not None
    rows = list(
        await gw.db.conn.execute_fetchall(
            "SELECT parked_at IS NOT NULL, delivered_at IS NOT NULL FROM crm_outbox ORDER BY id"
        )
    )
    return [tuple(r) for r in rows] == [(1, 0), (0, 1)]
