"""The panel's language catalogs (``web/panel/assets/i18n/*.json``): every key the panel's
JavaScript and HTML use is in every catalog, the catalogs have the same keys and the same
placeholders, and every id the server sends (errors, dispositions, outcomes, click-to-call
reasons) has a translation, so a Spanish-speaking agent never meets an English message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.calls.model import Outcome
from gateway.panel import clicktocall
from gateway.panel.settings import DEFAULT_DISPOSITIONS
from gateway.panel.users import Role
from gateway.store.models import LeadStatus

ROOT = Path(__file__).resolve().parent.parent
PANEL = ROOT / "web" / "panel"
CATALOGS = {
    p.stem: json.loads(p.read_text(encoding="utf-8"))
    for p in (PANEL / "assets" / "i18n").glob("*.json")
}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _prefixes() -> set[str]:
    return {k.split(".", 1)[0] for cat in CATALOGS.values() for k in cat}


def _used_keys() -> set[str]:
    """Keys in the sources: quoted literals shaped like ``prefix.name`` with a catalog's prefix
    (t('card.title'), arrays of keys), data-i18n="..." and data-i18n-attr="attr:key"."""
    prefixes = _prefixes()
    keys: set[str] = set()
    for path in (PANEL / "assets").glob("*.js"):
        for m in re.finditer(
            r"""['"`]([a-z0-9_]+\.[a-zA-Z0-9_]+)['"`]""", path.read_text(encoding="utf-8")
        ):
            if m.group(1).split(".")[0] in prefixes:
                keys.add(m.group(1))
    for path in PANEL.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r'data-i18n="([^"]+)"', text))
        for attrs in re.findall(r'data-i18n-attr="([^"]+)"', text):
            keys |= {pair.split(":")[1].strip() for pair in attrs.split(";")}
    return keys


def _server_ids() -> set[str]:
    """Keys for every id the server sends that the panel translates with tId()."""
    ids = {f"outcome.{o.value}" for o in Outcome}
    ids |= {f"disposition.{d.id}" for d in DEFAULT_DISPOSITIONS}
    ids |= {f"lead_status.{s.value}" for s in LeadStatus}
    ids |= {f"role.{r.value}" for r in Role}
    ids |= {
        f"presence.{s}" for s in ("available", "paused", "on_call", "offline", "after_call_work")
    }
    ids |= {f"c2c.{k}" for k in clicktocall.MESSAGES}
    ids |= {f"c2c.{code}" for code, _ in clicktocall._AGENT_REASONS.values()}
    ids |= {f"c2c.step_{s}" for s in ("calling_agent", "calling_customer", "connected")}
    ids |= {f"c2c.step_state_{s}" for s in ("done", "current", "failed", "todo")}
    ids |= {f"language.{code}" for code in CATALOGS}
    ids |= {f"link.{s}" for s in ("connecting", "live", "reconnecting")}
    # every error id the panel's routes and services can answer with
    for path in [*(ROOT / "gateway" / "panel").glob("*.py")]:
        ids |= {
            f"error.{i}" for i in re.findall(r'ApiError\(\s*\d+,\s*"([a-z_]+)"', path.read_text())
        }
    return ids


def test_there_are_spanish_and_english_catalogs() -> None:
    assert {"es", "en"} <= set(CATALOGS)


def test_catalogs_have_the_same_keys() -> None:
    reference = set(CATALOGS["en"])
    for code, catalog in CATALOGS.items():
        assert set(catalog) == reference, (code, set(catalog) ^ reference)


@pytest.mark.parametrize("code", sorted(CATALOGS))
def test_every_key_the_panel_uses_is_in_the_catalog(code: str) -> None:
    used = _used_keys()
    assert len(used) > 100  # the scan found the panel's keys, not nothing
    missing = sorted((used | _server_ids()) - set(CATALOGS[code]))
    assert missing == [], f"{code}.json lacks {missing}"


@pytest.mark.parametrize("code", sorted(CATALOGS))
def test_translations_keep_the_placeholders_and_plural_forms(code: str) -> None:
    for key, english in CATALOGS["en"].items():
        other = CATALOGS[code][key]
        assert type(other) is type(english), key
        if isinstance(english, dict):
            assert "other" in other, key
            texts = [*english.values(), *other.values()]
        else:
            texts = [english, other]
        assert other, key
        names = [set(PLACEHOLDER.findall(t)) for t in texts]
        assert all(n == names[0] for n in names), (code, key, names)


def test_a_key_missing_from_a_catalog_is_found(tmp_path: Path) -> None:
    """The check above is not vacuous: a key used in the JS but absent is reported."""
    used = _used_keys()
    assert "wrapup.heading" in used and "action.call_person" in used
    assert "error.bad_credentials" in _server_ids()
