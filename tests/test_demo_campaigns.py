"""The demo's campaigns: two seeded and running (new web leads' welcome; lost deals revived for
"no budget" and "competitor"), their e-mails going over real SMTP to the demo's own mailbox as
the clock advances, and the panel's demo-only mailbox routes that show them."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec
import pytest

from gateway.app import Gateway, create_app
from gateway.campaigns.segment import count_segment
from gateway.campaigns.store import CampaignStore
from gateway.demo import DEMO_CAMPAIGNS, demo_mail_settings
from gateway.demo_mailbox import DemoMailbox
from gateway.panel.routes import PANEL
from gateway.store.seed import seed_demo, seed_demo_campaigns
from tests.test_panel_support import FAST_HASHER, PASSWORD, USERS, PanelWorld, make_config

T0 = 1796029200.0  # Monday 30 November 2026, 10:00 in Madrid
DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def demo(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[tuple[PanelWorld, Any]]:
    """The demo's pieces as run_demo puts them together: its mailbox on loopback, ``mail:``
    pointing at it, its campaign settings, its seeded store; a fake clock."""
    mailbox = DemoMailbox()
    await mailbox.start()
    clock = FakeClock(T0)
    cfg = msgspec.structs.replace(
        make_config(tmp_path), campaigns=DEMO_CAMPAIGNS, mail=demo_mail_settings(mailbox.port)
    )
    gw = Gateway(cfg, clock=clock)
    gw.demo_mailbox = mailbox
    app = await create_app(cfg, gw)
    assert gw.db is not None
    await seed_demo(gw.db, n=240, rng=random.Random(7), now=T0)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    world = PanelWorld(gw, panel, await aiohttp_server(app))
    try:
        yield world, (mailbox, clock)
    finally:
        await world.close()
        await mailbox.close()


async def test_the_demo_seeds_two_running_campaigns_once(
    demo: tuple[PanelWorld, Any],
) -> None:
    world, _ = demo
    db = world.gw.db
    assert db is not None
    ids = await seed_demo_campaigns(db, now=T0)
    assert len(ids) == 2
    assert await seed_demo_campaigns(db, now=T0) == []  # a restarted demo keeps its own
    store = CampaignStore(db)
    campaigns = {c.id: c for c in await store.list()}
    assert [campaigns[i].status for i in ids] == ["running", "running"]
    nurturing, revival = (campaigns[i].definition for i in ids)
    assert nurturing.segment.statuses == ["new"] and nurturing.segment.sources == ["web_form"]
    assert revival.segment.statuses == ["lost"]
    assert revival.segment.lost_reasons == ["no_budget", "competitor"]
    # the seeded leads give both something to do
    tz = ZoneInfo("Europe/Madrid")
    for definition in (nurturing, revival):
        assert (await count_segment(db, definition.segment, tz)).emailable > 0


async def test_the_sink_receives_the_campaigns_mail_as_the_clock_advances_and_the_panel_shows_it(
    demo: tuple[PanelWorld, Any],
) -> None:
    world, (mailbox, clock) = demo
    db = world.gw.db
    assert db is not None and world.gw.campaigns is not None
    nurturing_id, revival_id = await seed_demo_campaigns(db, now=T0)
    store = CampaignStore(db)
    tz = ZoneInfo("Europe/Madrid")
    counts = [
        await count_segment(db, c.definition.segment, tz)
        for c in [await store.get(nurturing_id), await store.get(revival_id)]
        if c is not None
    ]
    first_mails = sum(c.emailable for c in counts)

    await world.gw.campaigns.tick()
    await mailbox.wait_for(first_mails)
    subjects = [m.subject for m in mailbox.mails()]
    assert any("gracias por tu interés" in s or "thanks for your interest" in s for s in subjects)
    assert any("tenemos un plan nuevo" in s or "we have a new plan" in s for s in subjects)
    assert not any("{{" in s for s in subjects)  # personalised, not the template
    mail = mailbox.mails()[0]
    assert mail.headers["List-Unsubscribe"].startswith("<http")
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.html and mail.text

    # two days later the welcome sequence's second e-mail goes out; nothing is sent twice
    clock.now = T0 + 2 * DAY + 60
    await world.gw.campaigns.tick()
    await mailbox.wait_for(first_mails + counts[0].emailable)
    seconds = [
        m for m in mailbox.mails() if "Cómo lo hacen" in m.subject or "How companies" in m.subject
    ]
    assert len(seconds) == counts[0].emailable
    assert len({(m.to[0], m.subject) for m in mailbox.mails()}) == len(mailbox.mails())

    # the panel's demo mailbox: supervisors list and open the mails; agents may not
    sofia = await world.sign_in("sofia")
    async with sofia.get(world.url("/panel/api/demo/mails?limit=5")) as r:
        assert r.status == 200
        items = (await r.json())["items"]
    assert len(items) == 5 and items[0]["id"] > items[-1]["id"]  # newest first
    async with sofia.get(world.url(f"/panel/api/demo/mails/{items[0]['id']}")) as r:
        one = await r.json()
    assert one["subject"] == items[0]["subject"] and one["html"] and one["text"]
    assert "List-Unsubscribe" in one["headers"]
    async with sofia.get(world.url("/panel/api/demo/mails/999999")) as r:
        assert r.status == 404
    ana = await world.sign_in("ana")
    async with ana.get(world.url("/panel/api/demo/mails")) as r:
        assert r.status == 403


async def test_the_mailbox_keeps_the_newest_200_and_is_not_there_outside_the_demo(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    import aiosmtplib

    mailbox = DemoMailbox(keep=200)
    await mailbox.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mailbox.port) as smtp:
            for i in range(205):
                msg = f"From: a@example.com\r\nTo: b@example.com\r\nSubject: n{i}\r\n\r\nhi {i}\r\n"
                await smtp.sendmail("a@example.com", ["b@example.com"], msg)
        kept = mailbox.mails()
        assert len(kept) == 200 and mailbox.received == 205
        assert kept[0].subject == "n204" and kept[-1].subject == "n5"
        assert kept[0].text.strip() == "hi 204" and kept[0].html == ""
    finally:
        await mailbox.close()

    gw = Gateway(make_config(tmp_path))  # not the demo: no mailbox, no route
    app = await create_app(gw.cfg, gw)
    server = await aiohttp_server(app)
    url = f"http://{server.host}:{server.port}/panel/api/demo/mails"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 404
