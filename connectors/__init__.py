"""CRM connectors: one module per CRM behind ``connectors.base.CrmConnector``.

``REGISTRY`` maps each config ``type`` to the factory building its connector;
``build_connectors`` turns the validated ``connectors:`` config list into connectors (not yet
started: the caller awaits ``start()`` and, on shutdown, ``close()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from connectors.base import ConnectorHealth, CrmConnector, RecordRejected, SessionExpired
from connectors.generic_http import GenericHttpConnector
from connectors.odoo import OdooConnector
from connectors.settings import ConnectorSettings
from connectors.sugarcrm import SugarCrmConnector
from connectors.vtiger import VtigerConnector

Factory = Callable[..., CrmConnector]

REGISTRY: dict[str, Factory] = {
    "sugarcrm": SugarCrmConnector,
    "suitecrm": SugarCrmConnector,  # SuiteCRM 7 keeps SugarCRM's v4_1 API unchanged
    "vtiger": VtigerConnector,
    "odoo": OdooConnector,
    "generic_http": GenericHttpConnector,
}


def connector_type(settings: Any) -> str:
    """The ``type`` tag of a connector settings struct."""
    return str(type(settings).__struct_config__.tag)


def build_connectors(
    settings_list: Iterable[ConnectorSettings], *, public_url: str
) -> list[CrmConnector]:
    """One connector per config entry, in config order (the lookup chain's order).

    ``public_url`` is how CRMs reach the gateway: recording links written into call logs
    are made absolute with it."""
    out: list[CrmConnector] = []
    for s in settings_list:
        factory = REGISTRY[connector_type(s)]
        out.append(factory(s, public_url=public_url))
    return out


__all__ = [
    "REGISTRY",
    "ConnectorHealth",
    "CrmConnector",
    "RecordRejected",
    "SessionExpired",
    "build_connectors",
    "connector_type",
]
