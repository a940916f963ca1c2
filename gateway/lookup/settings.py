"""The ``lookup:`` config section: number region, time budget and cache."""

from __future__ import annotations

import msgspec


class LookupSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    default_region: str = "ES"  # ISO 3166 region for numbers typed without a country code
    budget_ms: int = 300  # total time for store + connectors before the card is sent
    cache_ttl: float = 300.0  # seconds a found card is reused
    negative_ttl: float = 30.0  # seconds an unknown number stays unknown
    cache_size: int = 100_000
