"""Connectors inside the real lookup chain: a hanging CRM does not hold the pop-up back."""

from __future__ import annotations

from gateway.lookup.chain import LookupChain
from gateway.lookup.settings import LookupSettings
from tests.fakes import connector_harness as harness
from tests.fakes.sugarcrm import SugarCrm
from tests.fakes.vtiger import Vtiger
from tests.test_connector_sugarcrm import make as make_sugar
from tests.test_connector_vtiger import make as make_vtiger


async def test_hanging_crm_is_cut_off_and_the_other_answers(aiohttp_server):
    tiger, suite = Vtiger(), SugarCrm()
    tiger.add("Contacts", firstname="Ana", lastname="Tiger", mobile="+34612345678")
    suite.add("Contacts", first_name="Ana", last_name="Suite", phone_mobile="+34612345678")
    settings = LookupSettings(budget_ms=300, cache_ttl=0.0, negative_ttl=0.0)
    async with (
        harness.started(await make_vtiger(aiohttp_server, tiger, timeout_ms=5000)) as slow,
        harness.started(await make_sugar(aiohttp_server, suite)) as fast,
    ):
        chain = LookupChain(None, [slow, fast], settings)
        tiger.faults.hang = True  # listed first, and never answers
        card = await chain.lookup("+34 612 34 56 78")
        assert card.display_name == "Ana Suite" and card.source == "suite"
        assert tiger.faults.received > 0  # it was asked, then cut off at the budget

        tiger.faults.hang = False  # the cut-off connector is still usable afterwards
        card = await chain.lookup("+34612345678")
        assert card.display_name == "Ana Tiger" and card.source == "tiger"
