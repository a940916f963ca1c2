"""Phone number spellings a CRM user may have typed, and the safe fragments put into queries.

Pure functions: CRMs store numbers as typed (``+34 612 34 56 78``, ``612345678``,
``0034612345678``), so a lookup tries each spelling. Everything returned here holds only
digits, ``+``, spaces, ``-``, ``(`` and ``)``, which is what lets the connectors put them into
query languages without any quote or escape character ever reaching the CRM.
"""

from __future__ import annotations

import re

import phonenumbers

_NOT_DIAL = re.compile(r"[^0-9+]")
_SAFE_SPELLING = re.compile(r"[0-9+ ()\-]{3,32}")


def digits_only(text: str) -> str:
    """The digits of ``text`` (a leading ``+`` dropped, everything else dropped)."""
    return re.sub(r"\D", "", text)


def dial_string(text: str) -> str:
    """Digits and ``+`` only: the form every number fragment of a query is built from."""
    return _NOT_DIAL.sub("", text)


def spellings(e164: str, raw: str = "") -> list[str]:
    """Distinct spellings of a number, most exact first; only query-safe characters."""
    out: list[str] = []

    def add(s: str) -> None:
        s = s.strip()
        if s and _SAFE_SPELLING.fullmatch(s) and s not in out:
            out.append(s)

    add(dial_string(e164))
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        num = None
    if num is not None:
        fmt = phonenumbers.PhoneNumberFormat
        national = phonenumbers.format_number(num, fmt.NATIONAL)
        add(phonenumbers.format_number(num, fmt.INTERNATIONAL))
        add(national)
        add(digits_only(national))
        add(phonenumbers.national_significant_number(num))
        add("00" + digits_only(e164))
        add(digits_only(e164))
    add(dial_string(raw))
    add(digits_only(raw))
    return out


def last_digits(e164: str, n: int) -> str:
    """The last ``n`` digits, or "" when the number is shorter (too vague to match on)."""
    d = digits_only(e164)
    return d[-n:] if n and len(d) >= n else ""


def national_digits(e164: str) -> str:
    """The national significant number's digits (what users type without a prefix)."""
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return digits_only(e164)


def digit_pattern(e164: str) -> str:
    """A ``LIKE`` pattern matching the national number's digits with anything between and
    before them (``%9%1%1%2%3%4%5%6%7``): it finds ``+34 911 234 567``, ``0034911234567`` and
    ``+34 (91) 123-4567`` alike, where a suffix ``LIKE`` sees nothing past a space. It can also
    match other numbers holding those digits in order, so check every hit with
    :func:`same_number`. Only digits and ``%``: safe inside any quoted literal."""
    nsn = national_digits(e164)
    return "%" + "%".join(nsn) if len(nsn) >= 6 else ""


def same_number(typed: str, e164: str) -> bool:
    """Whether ``typed`` (a phone field as a CRM user typed it) is the number ``e164``.

    Accepts the forms people type: international with ``+`` or ``00``, national with or
    without the trunk prefix (``0`` in most of Europe, ``1`` in NANP), any separators.
    Conservative: the digits must be exactly one of those forms, never a longer number that
    merely ends in the same digits."""
    digits = digits_only(typed)
    if not digits or not e164.startswith("+"):
        return False
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    nsn = phonenumbers.national_significant_number(num)
    code = num.country_code or 0
    cc = str(code)
    forms = {nsn, cc + nsn, "00" + cc + nsn, "011" + cc + nsn}
    region = phonenumbers.region_code_for_country_code(code)
    prefix = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = prefix.national_prefix if prefix is not None else None
    if trunk:
        forms.add(trunk + nsn)
        forms |= {cc + trunk + nsn, "00" + cc + trunk + nsn}  # +44 (0)20 ...: a kept "(0)"
    return digits in forms
