"""Phone number normalization: every format people and PBXs send, and every hostile one."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidNumber
from gateway.lookup.numbers import dial_safe, is_extension, normalize

LAB = "+34911234567"


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+34 911 23 45 67", "ES", LAB),
        ("911 23 45 67", "ES", LAB),
        ("911234567", "ES", LAB),
        ("0034 911 234 567", "ES", LAB),
        ("0034-911-234-567", "GB", LAB),  # 00 prefix works whatever the default region
        ("+34 (91) 123-45-67", "US", LAB),
        ("+34.911.234.567", "ES", LAB),
        ("  +34 911 23 45 67\t", "ES", LAB),
        ("0044 20 7946 0018", "ES", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("07700 900123", "GB", "+447700900123"),
        ("(415) 555-0134", "US", "+14155550134"),
        ("+1 (415) 555-0134", "ES", "+14155550134"),
        ("+52 55 1234 5678", "ES", "+525512345678"),
        ("030 1234567", "DE", "+49301234567"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("tel:+34-911-234-567", "US", LAB),
        ("TEL:+34911234567;phone-context=example.com", "US", LAB),
        (
            "\u0660\u0660\u0663\u0664\u0669\u0661\u0661\u0662\u0663\u0664\u0665\u0666\u0667",
            "ES",
            LAB,
        ),
        ("\uff0b\uff13\uff14\uff19\uff11\uff11\uff12\uff13\uff14\uff15\uff16\uff17", "ES", LAB),
        ("+\u0969\u096a\u0669\u0661\u0661 234 567", "US", LAB),  # mixed scripts
        ("+34\u00a0911\u2013234\u2013567", "US", LAB),  # no-break space, en dash
    ],
)
def test_formats_people_type_normalize_to_e164(raw: str, region: str, e164: str) -> None:
    assert normalize(raw, region).e164 == e164


@pytest.mark.parametrize(
    ("raw", "ext"),
    [
        ("+34 911 23 45 67;ext=12", "12"),
        ("tel:+34-911-234-567;ext=305", "305"),
        ("+34 911 23 45 67 ext. 12", "12"),
        ("+34 911 23 45 67 ext 12", "12"),
        ("+34 911 23 45 67 x12", "12"),
        ("+34 911 23 45 67 X 4", "4"),
        ("+34 911 23 45 67#99", "99"),
    ],
)
def test_extensions_are_split_off(raw: str, ext: str) -> None:
    n = normalize(raw, "ES")
    assert (n.e164, n.extension) == (LAB, ext)


def test_region_and_line_type_are_reported() -> None:
    mobile = normalize("612 34 56 78", "ES")
    assert (mobile.region, mobile.line_type) == ("ES", "mobile")
    fixed = normalize("0044 20 7946 0018", "ES")
    assert (fixed.region, fixed.line_type) == ("GB", "fixed_line")
    unallocated = normalize("(415) 000-0000", "US")  # possible length, no such range
    assert (unallocated.e164, unallocated.region, unallocated.line_type) == (
        "+14150000000",
        "US",
        "unknown",
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tel:", "empty"),
        ("abc", "letters"),
        ("+34 911 CALL ME", "letters"),
        ("1-800-FLOWERS", "letters"),
        ("1" * 40, "too many digits (40)"),
        ("+" + "9" * 40, "too many digits"),
        ("x" * 500, "too long"),
        ("34+911234567", "'+' is only allowed at the start"),
        ("<script>alert(1)</script>", "contains '<'"),
        ("911234567\n", None),  # trailing newline is whitespace: fine
        ("+999 1234567", "unknown country code"),
        ("12345678", "not a possible phone number"),
        ("+34 1", "too short"),
        ("101", "internal extension"),
        ("\u0661\u0660\u0661", "internal extension"),  # 101 in Arabic-Indic digits
        ("+", "no digits"),
        ("---", "no digits"),
    ],
)
def test_hostile_input_gets_a_clear_error(raw: str, reason: str | None) -> None:
    if reason is None:
        assert normalize(raw, "ES").e164 == LAB
        return
    with pytest.raises(InvalidNumber) as e:
        normalize(raw, "ES")
    assert reason in str(e.value)


@pytest.mark.parametrize("raw", [None, 34911234567, b"+34911234567", ["+34911234567"]])
def test_non_text_is_refused_not_crashed(raw: object) -> None:
    with pytest.raises(InvalidNumber, match="as text"):
        normalize(raw, "ES")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("101", True),
        ("12", True),
        ("123456", True),
        (" 2001 ", True),
        ("1", False),
        ("1234567", False),
        ("+101", False),
        ("0034101", False),
        ("10a", False),
        ("", False),
    ],
)
def test_is_extension(raw: str, expected: bool) -> None:
    assert is_extension(raw) is expected


def test_extension_length_is_configurable() -> None:
    assert is_extension("1234567", (2, 7))
    with pytest.raises(InvalidNumber, match="extension"):
        normalize("1234567", "ES", extension_digits=(2, 7))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("+34 911 23 45 67", "+34911234567"),
        ("911-234-567", "911234567"),
        ("*72#", "*72#"),
        ("101", "101"),
        ("\uff19\uff11\uff11", "911"),
    ],
)
def test_dial_safe_accepts_numbers(raw: str, clean: str) -> None:
    assert dial_safe(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "911&SIP/evil",
        "911,30,tT",
        "911|x",
        "911;ext",
        "SIP/911",
        "911\n",
        "${EXTEN}",
        "911(1)",
        "",
        "abc",
        "9" * 40,
        "+",
        "91+1",
    ],
)
def test_dial_safe_refuses_injection(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        dial_safe(raw)
