"""Connector config: the example file validates, mistakes get errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import REGISTRY, CrmConnector, build_connectors, connector_type
from connectors.callrecord import FinishedCall
from connectors.numbers import spellings
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config/connectors.example.yaml"


def test_example_file_validates_and_builds_every_connector():
    cfg = load_config(EXAMPLE, env={"ODOO_API_KEY": "odoo-secret-key"})
    types = [connector_type(c) for c in cfg.connectors]
    assert types == ["suitecrm", "vtiger", "odoo", "generic_http"]
    built = build_connectors(cfg.connectors, public_url=cfg.http.public_url)
    assert all(isinstance(c, CrmConnector) for c in built)
    assert [c.name for c in built] == ["suite", "tiger", "odoo", "inhouse"]
    assert set(REGISTRY) == {"sugarcrm", "suitecrm", "vtiger", "odoo", "generic_http"}
    assert "odoo-secret-key" not in repr(
        cfg.connectors
    )  # secrets stay out of reprs (and so of logs)


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ("{type: odoo, name: o, url: odoo.example.com, database: d, username: u, password: p}",
         "connectors[0].url", "url: expected an http(s) URL"),
        ("{type: suitecrm, name: s, url: 'https://x', username: u}",
         "connectors[0]", "password: required"),
        ("{type: vtiger, name: v, url: 'https://x', username: u, access_key: k, users: {'201': 5}}",
         "connectors[0].users[...]", "expected str"),
        ("{type: vtiger, name: v, url: 'https://x', username: u, access_key: k, users: {'201': '5'}}",
         "connectors[0]", "users.201: expected a vTiger user id like 19x5"),
        ("{type: vtiger, name: v, url: 'https://x', username: u, access_key: k, timezone: Mars/Base}",
         "connectors[0].timezone", "timezone: expected an IANA zone"),
        ("{type: generic_http, name: g, lookup_url: 'https://x/?n={number}', "
         "fields: {display_name: a}}", "connectors[0].lookup_url", "lookup_url: expected placeholders"),
        ("{type: generic_http, name: g, lookup_url: 'https://x/?n={e164}'}",
         "connectors[0]", "fields.display_name: required"),
        ("{type: generic_http, name: g, log_url: 'https://x', fields: {nickname: a}}",
         "connectors[0]", "fields.nickname: expected one of"),
        ("{type: salesforce, name: s}", "connectors[0].type", ""),
        ("{type: odoo, name: o, url: 'https://x', database: d, username: u, password: p, "
         "tiemout_ms: 5}", "connectors[0].tiemout_ms", "unknown key"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key_and_the_fix(entry, key, words):
    with pytest.raises(ConfigError) as err:
        parse_config(f"connectors:\n  - {entry}\n")
    assert err.value.path == key
    assert words in str(err.value)


def test_duplicate_connector_names_are_refused():
    entry = "{type: generic_http, name: same, log_url: 'https://x'}"
    with pytest.raises(ConfigError, match="unique name"):
        parse_config(f"connectors:\n  - {entry}\n  - {entry}\n")


def test_unset_secret_variable_is_named():
    text = EXAMPLE.read_text().replace("${ODOO_API_KEY:-change-me}", "${ODOO_API_KEY}")
    with pytest.raises(ConfigError, match="ODOO_API_KEY"):
        parse_config(text, env={})


def test_number_spellings_users_type_are_tried_and_stay_query_safe():
    s = spellings("+34612345678", "612 34 56 78")
    assert {"+34612345678", "612345678", "612 34 56 78", "0034612345678"} <= set(s)
    assert spellings("' OR 1=1 --", "' OR 1=1 --") == []
    assert all(set(x) <= set("0123456789+ ()-") for x in spellings("+12125550100", "x'; --"))


def test_call_record_times_may_be_epoch_or_iso():
    base = {"id": "c", "direction": "inbound", "caller": "+34612345678", "outcome": "answered"}
    a = FinishedCall.from_record({**base, "started_at": 1_700_000_000})
    b = FinishedCall.from_record({**base, "started_at": "2023-11-14T22:13:20Z"})
    assert a.started_at == b.started_at and a.answered
    odd = FinishedCall.from_record({**base, "id": "x' OR '1'='1", "started_at": 1})
    assert odd.marker.startswith("centralita-call:") and "'" not in odd.marker
