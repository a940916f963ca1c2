"""Typed keys for what the API keeps on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.lookup.chain import LookupChain
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from gateway.store.repositories import (
    AccountRepository,
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)

DB = web.AppKey("db", Database)
LOOKUP = web.AppKey("lookup", LookupChain)
CONFIG = web.AppKey("config", GatewayConfig)
PEOPLE = web.AppKey("people", PersonRepository)
ACCOUNTS = web.AppKey("accounts", AccountRepository)
ACTIVITIES = web.AppKey("activities", ActivityRepository)
FOLLOW_UPS = web.AppKey("follow_ups", FollowUpRepository)
CALL_LOG = web.AppKey("call_log", CallLog)
