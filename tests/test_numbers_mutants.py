"""The exact limits and messages of gateway/lookup/numbers.py: what a user typing a number sees.

Each test pins an answer a person would notice changing (an accepted number refused, a
message reworded, a number shown in the wrong format), found by mutation testing (issue #11).
"""

from __future__ import annotations

import pytest

from gateway.errors import InvalidNumber
from gateway.lookup import numbers
from gateway.lookup.numbers import (
    ALLOWED_CHARACTERS,
    dial_safe,
    display_format,
    is_extension,
    normalize,
)

LAB = "+34911234567"
DIAL_ONLY = ALLOWED_CHARACTERS + " (or * and # for a service code)"


def _refusal(raw: object, region: str = "ES") -> str:
    with pytest.raises(InvalidNumber) as e:
        normalize(raw, region)  # type: ignore[arg-type]
    return str(e.value)


def _dial_refusal(raw: object) -> str:
    with pytest.raises(InvalidNumber) as e:
        dial_safe(raw)  # type: ignore[arg-type]
    return str(e.value)


def test_star_import_gives_exactly_the_public_names() -> None:
    names: dict[str, object] = {}
    exec("from gateway.lookup.numbers import *", names)
    assert sorted(k for k in names if k != "__builtins__") == sorted(
        [
            "ALLOWED_CHARACTERS",
            "InvalidNumber",
            "NormalizedNumber",
            "dial_safe",
            "display_format",
            "is_extension",
            "normalize",
            "to_ascii_digits",
        ]
    )
    assert numbers.InvalidNumber is InvalidNumber


def test_input_of_64_characters_is_parsed_65_is_refused_unread() -> None:
    padded = LAB + " " * (64 - len(LAB))
    assert len(padded) == 64
    assert normalize(padded, "ES").e164 == LAB
    assert _refusal(padded + " ") == "too long to be a phone number (65 characters)"


def test_17_digits_with_a_trunk_prefix_pass_18_are_refused() -> None:
    seventeen = "0049 30 11111111111"  # 00 + a 15-digit German number
    assert normalize(seventeen, "ES").e164 == "+493011111111111"
    assert _refusal(seventeen + "1") == "too many digits (18); E.164 allows at most 15"


def test_a_plus_from_another_script_keeps_the_number_international() -> None:
    n = normalize("\uff0b1 415 555 0132", "ES")  # full-width plus
    assert (n.e164, n.region) == ("+14155550132", "US")
    assert normalize("\u207a34 911 23 45 67", "US").e164 == LAB  # superscript plus


def test_separators_of_other_scripts_are_visual_only() -> None:
    assert normalize("\uff08415\uff09\u3000555\uff0d0134", "US").e164 == "+14155550134"
    assert normalize("911\uff0e234\u2212567", "ES").e164 == LAB


def test_a_letter_of_another_script_is_named_not_dropped() -> None:
    assert _refusal("+34 911 234 56\u03a97") == "contains letters ('\u03a9'); expected digits only"
    assert _refusal("911 234 567 \u2603") == (
        f"contains '\u2603'; a phone number may have only {ALLOWED_CHARACTERS}"
    )


def test_a_circled_digit_is_named_not_blamed_on_a_plus() -> None:
    # "\u2460" isdigit() but has no decimal value: to_ascii_digits keeps it and _ALLOWED
    # refuses it; the message must name it, not a "+" the input does not contain
    assert _refusal("911 234 567 \u2460") == (
        f"contains '\u2460'; a phone number may have only {ALLOWED_CHARACTERS}"
    )


@pytest.mark.parametrize(
    ("raw", "name"),
    [(None, "NoneType"), (34911234567, "int"), (b"+34911234567", "bytes")],
)
def test_non_text_gets_the_message_with_its_type(raw: object, name: str) -> None:
    assert _refusal(raw) == f"expected a phone number as text, got {name}"
    assert _dial_refusal(raw) == f"expected a number as text, got {name}"
    assert is_extension(raw) is False  # type: ignore[arg-type]


def test_an_extension_alone_is_not_split_off_a_number() -> None:
    # "x12" / "#12" have nothing before the extension: the stray character is the error
    assert _refusal("x12") == "contains letters ('x'); expected digits only"
    assert _refusal("#12") == (f"contains '#'; a phone number may have only {ALLOWED_CHARACTERS}")
    # one digit before it is already a number (too short), not a letter in the middle
    assert _refusal("5x12") == "not a phone number"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("34+911234567", "'+' is only allowed at the start"),
        ("+999 1234567", "unknown country code"),
        ("12345678", "not a possible phone number for region ES (wrong length)"),
        ("+34 91", "not a possible phone number for +34 (wrong length)"),
        ("0034 91", "not a possible phone number for +34 (wrong length)"),
        ("+", "no digits"),
        ("- -", "no digits"),
    ],
)
def test_refusal_messages(raw: str, message: str) -> None:
    assert _refusal(raw) == message


def test_without_default_region_a_national_number_has_no_country() -> None:
    assert _refusal("911 234 567", "") == "no country code and no default region"
    assert normalize("+34 911 234 567", "").e164 == LAB
    assert normalize("911 234 567", "es").e164 == LAB  # region in lower case


def test_a_fictional_range_keeps_its_country_region() -> None:
    n = normalize("+1 415 555 0132", "ES")
    assert (n.e164, n.region, n.line_type) == ("+14155550132", "US", "fixed_line_or_mobile")
    fictional = normalize("+34 111 234 567", "US")  # possible length, unallocated in Spain
    assert (fictional.e164, fictional.region, fictional.line_type) == (
        "+34111234567",
        "ES",
        "unknown",
    )
    # +44 is shared (GB, Jersey, Guernsey, Man): an unallocated range gets the main region
    shared = normalize("+44 1000 000000", "ES")
    assert (shared.e164, shared.region, shared.line_type) == ("+441000000000", "GB", "unknown")


def test_tel_uri_keeps_only_its_extension_parameter() -> None:
    n = normalize("tel:+34-911-234-567;phone-context=example.com;ext=7", "US")
    assert (n.e164, n.extension) == (LAB, "7")
    n = normalize("tel:+34-911-234-567;isub=1;ext=8", "US")
    assert (n.e164, n.extension) == (LAB, "8")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("+1 (415) 555-0132", "+14155550132"),
        ("+44 (0)20 7946 0958", "+4402079460958"),
        ("(415)555.0132", "4155550132"),
        ("  +34 911 234 567  ", "+34911234567"),
        ("\uff0b34 911 234 567", "+34911234567"),
        ("#12", "#12"),
    ],
)
def test_dial_safe_removes_one_area_code_bracket_pair(raw: str, clean: str) -> None:
    assert dial_safe(raw) == clean


@pytest.mark.parametrize(
    ("raw", "bad"),
    [
        ("+1 (415) (555) 0132", "("),  # two pairs
        ("+1 (415) 555 (01) 32", "("),  # two pairs, each before digits
        ("+44 (0)20 (7946) 0958", "("),
        ("+1 415 555 (0132)", "("),  # nothing after it: not an area code
        ("(+1) 415 555 0132", "("),  # not digits inside
        ("911(1)", "("),
        ("911 1)", ")"),
    ],
)
def test_dial_safe_refuses_other_brackets_by_name(raw: str, bad: str) -> None:
    assert _dial_refusal(raw) == f"contains {bad!r}; a number to dial may have only {DIAL_ONLY}"


def test_dial_safe_messages() -> None:
    assert _dial_refusal("") == "empty number"
    assert _dial_refusal(" - . ") == "empty number"
    assert _dial_refusal("911&SIP/evil") == (
        f"contains '&'; a number to dial may have only {DIAL_ONLY}"
    )
    assert _dial_refusal("abc") == f"'abc' is not a number to dial; expected only {DIAL_ONLY}"
    long = "9" * 40
    message = _dial_refusal(long)
    assert message == f"{long!r} is not a number to dial; expected only {DIAL_ONLY}"[:200]
    assert len(message) == 200


@pytest.mark.parametrize(
    ("e164", "region", "shown"),
    [
        (LAB, "ES", "911 23 45 67"),  # own region: national format
        (LAB, "es", "911 23 45 67"),
        ("+14155550132", "ES", "+1 415-555-0132"),  # elsewhere: international
        ("+14155550132", "US", "(415) 555-0132"),
        (LAB, "", "+34 911 23 45 67"),
        (LAB, None, "+34 911 23 45 67"),
        ("garbage", "ES", "garbage"),  # does not parse: shown as stored
        ("", "ES", ""),
        ("911234567", "ES", "911234567"),  # no + and no region to read it with
    ],
)
def test_display_format(e164: str, region: str | None, shown: str) -> None:
    assert display_format(e164, region) == shown  # type: ignore[arg-type]


def test_an_unallocated_range_keeps_the_region_its_area_code_names() -> None:
    from gateway.lookup.numbers import normalize

    # +1 268 is Antigua and Barbuda; 000 0000 is not allocated there, but it is still Antigua
    assert normalize("+1 268 000 0000", "ES").region == "AG"
    assert normalize("+1 212 555 0100", "ES").region == "US"  # fictional 555-01xx: still US
