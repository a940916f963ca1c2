"""Phone numbers from the outside world to E.164, or a clear reason why not.

Pure: no I/O, no clock. Everything a PBX, a CSV file or an API client sends is hostile until
parsed here: letters, 40 digits, ``+`` or ``00`` prefixes, spaces, dashes, brackets, extensions
(``;ext=12``, ``ext. 12``, ``x12``), ``tel:`` URIs and digits from other scripts (Arabic-Indic,
full-width...). Each input gets a :class:`NormalizedNumber` or an :class:`InvalidNumber` whose
message says what is wrong; nothing else escapes.

Internal extensions (``101``) are not phone numbers: :func:`normalize` refuses them so that an
extension can never be stored or looked up as if it were ``+34101``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from gateway.errors import InvalidNumber

__all__ = [
    "ALLOWED_CHARACTERS",
    "InvalidNumber",
    "NormalizedNumber",
    "dial_safe",
    "display_format",
    "is_extension",
    "normalize",
    "to_ascii_digits",
]

MAX_INPUT = 64  # longer input is refused before any parsing work
MAX_DIGITS = 17  # E.164 allows 15 digits; a little slack for trunk prefixes like 00 or 0
EXTENSION_DIGITS = (2, 6)  # default length range of internal extensions

_LINE_TYPES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

# an extension written after the number: ";ext=12", " ext. 12", " extension 12", " x12", "#12"
_EXTENSION = re.compile(r"(?:;\s*ext\s*=|\s*(?:ext\.?|extension|x|#))\s*(\d{1,8})\s*$", re.I)
_ALLOWED = re.compile(r"\+?[0-9 .()\-/]*")
_PLUS_LIKE = {"\uff0b": "+", "\u207a": "+", "\u208a": "+"}  # full-width, super/subscript plus
# what the separators may look like in other scripts: spaces of all kinds, dashes of all kinds
_SEPARATORS = {
    "\u00a0": " ",
    "\u2007": " ",
    "\u202f": " ",
    "\u3000": " ",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\uff0d": "-",
    "\uff08": "(",
    "\uff09": ")",
    "\uff0e": ".",
}
_DIAL_FORBIDDEN = ("&", ",", "|", ";", "/", "\n", "\r", "${", "\x00")
_DIAL_OK = re.compile(r"\+?[0-9*#]{1,32}")
# brackets are how people write an area code: "+1 (415) 555-0132", "+44 (0)20 7946 0958". One
# pair around digits, with digits after it, is a visual separator; any other bracket is refused
_AREA_BRACKETS = re.compile(r"\(\s*(\d{1,5})\s*\)(?=\s*[-.]?\s*\d)")
# the one sentence both checks use, so they never contradict each other about what is allowed
ALLOWED_CHARACTERS = (
    "digits with spaces, dashes, dots or brackets around the area code, and an optional leading +"
)


@dataclass(frozen=True, slots=True)
class NormalizedNumber:
    """A number as the store indexes it: E.164, its ISO region and line type where known."""

    e164: str
    region: str | None
    line_type: str  # "mobile", "fixed_line", ... or "unknown"
    extension: str | None = None


def to_ascii_digits(text: str) -> str:
    """Replace every Unicode decimal digit (Arabic-Indic, full-width, Devanagari...) by 0-9."""
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        d = unicodedata.decimal(ch, None)
        if d is not None:
            out.append(str(d))
        else:
            out.append(_PLUS_LIKE.get(ch) or _SEPARATORS.get(ch) or ch)
    return "".join(out)


def is_extension(raw: str, digits: tuple[int, int] = EXTENSION_DIGITS) -> bool:
    """True for a bare internal extension such as ``101``: only digits, within the length range."""
    if not isinstance(raw, str):
        return False
    s = to_ascii_digits(raw.strip())
    return s.isdigit() and digits[0] <= len(s) <= digits[1]


def normalize(
    raw: str,
    default_region: str,
    *,
    extension_digits: tuple[int, int] = EXTENSION_DIGITS,
) -> NormalizedNumber:
    """Parse ``raw`` as typed by a person or sent by a PBX; raise InvalidNumber with the reason."""
    if not isinstance(raw, str):
        raise InvalidNumber(f"expected a phone number as text, got {type(raw).__name__}")
    if len(raw) > MAX_INPUT:
        raise InvalidNumber(f"too long to be a phone number ({len(raw)} characters)")
    return _normalize(raw, default_region, tuple(extension_digits))


# One call's number is parsed half a dozen times (lookup, call log, scoring, campaigns, the
# pop-up's card), and libphonenumber's parse is the costliest step of a ring's path: the same
# text gives the same frozen answer, so a bounded memo serves the repeats. Refusals are not
# kept (an exception is not cached), so hostile input cannot fill it with junk.
@functools.lru_cache(maxsize=8192)
def _normalize(
    raw: str, default_region: str, extension_digits: tuple[int, int]
) -> NormalizedNumber:
    s = to_ascii_digits(raw).strip()
    if s[:4].lower() == "tel:":
        s = _strip_tel_uri(s[4:])
    if not s:
        raise InvalidNumber("empty number")
    extension = None
    m = _EXTENSION.search(s)
    if m and m.start() > 0:
        extension = m.group(1)
        s = s[: m.start()].strip()
    if is_extension(s, extension_digits):
        raise InvalidNumber(f"{s!r} is an internal extension, not a phone number")
    if not _ALLOWED.fullmatch(s):
        # the first character the pattern refuses; ASCII digits only (a circled ① isdigit())
        bad = next((ch for ch in s if not (ch in "0123456789" or ch in " .()-/+")), "+")
        if bad.isalpha():
            raise InvalidNumber(f"contains letters ({bad!r}); expected digits only")
        if bad == "+":
            raise InvalidNumber("'+' is only allowed at the start")
        raise InvalidNumber(f"contains {bad!r}; a phone number may have only {ALLOWED_CHARACTERS}")
    digits = re.sub(r"\D", "", s)
    if not digits:
        raise InvalidNumber("no digits")
    if len(digits) > MAX_DIGITS:
        raise InvalidNumber(f"too many digits ({len(digits)}); E.164 allows at most 15")
    if s.startswith("+"):
        text = "+" + digits
    elif digits.startswith("00"):
        text = "+" + digits[2:]  # the international prefix of most of the world
    else:
        text = digits
    region = (default_region or "").upper()
    try:
        num = phonenumbers.parse(text, region or None)
    except NumberParseException as e:
        raise InvalidNumber(_parse_reason(e, region)) from None
    if not phonenumbers.is_possible_number(num):
        where = f"+{num.country_code}" if text.startswith("+") else f"region {region}"
        raise InvalidNumber(f"not a possible phone number for {where} (wrong length)")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    line_type = "unknown"
    num_region = phonenumbers.region_code_for_number(num)
    if num_region and phonenumbers.is_valid_number(num):
        line_type = _LINE_TYPES.get(phonenumbers.number_type(num), "unknown")
    elif not num_region:
        # fictional or unallocated ranges (the US 555-01xx) are possible but not valid:
        # still a number, the country code tells the region (an unallocated +1 268 range
        # keeps the region its area code names, Antigua, not the country code's main one)
        cc = num.country_code  # always set on a parsed number; None would map to "ZZ" anyway
        num_region = "ZZ" if cc is None else phonenumbers.region_code_for_country_code(cc)
        if num_region == "ZZ":
            num_region = None
    return NormalizedNumber(e164, num_region, line_type, extension)


def dial_safe(raw: str) -> str:
    """Return ``raw`` as a string safe to put into an Asterisk Dial/Originate, or raise.

    Refuses everything that separates Dial arguments or expands in the dialplan (``&``, ``,``,
    ``|``, ``;``, ``/``, newlines, ``${``, stray brackets); allows digits, ``*``, ``#``, a
    leading ``+``, the spaces/dashes/dots people type and one pair of brackets around an area
    code (all of which are removed), so ``+1 (415) 555-0132`` dials ``+14155550132``.
    """
    if not isinstance(raw, str):
        raise InvalidNumber(f"expected a number as text, got {type(raw).__name__}")
    text = to_ascii_digits(raw)
    for bad in _DIAL_FORBIDDEN:
        if bad in text:
            raise InvalidNumber(f"contains {bad!r}; a number to dial may have only {_DIAL_ALLOWED}")
    text = _AREA_BRACKETS.sub(r" \1 ", text.strip(), count=1)
    for bad in ("(", ")"):
        if bad in text:
            raise InvalidNumber(f"contains {bad!r}; a number to dial may have only {_DIAL_ALLOWED}")
    s = re.sub(r"[ .\-]", "", text)
    if not s:
        raise InvalidNumber("empty number")
    if not _DIAL_OK.fullmatch(s):
        raise InvalidNumber(f"{raw!r} is not a number to dial; expected only {_DIAL_ALLOWED}"[:200])
    return s


_DIAL_ALLOWED = ALLOWED_CHARACTERS + " (or * and # for a service code)"


def _strip_tel_uri(rest: str) -> str:
    """``tel:+34-911;ext=12;phone-context=x`` -> ``+34-911;ext=12`` (visual separators kept)."""
    parts = rest.split(";")
    keep = [parts[0]]
    for p in parts[1:]:
        if p.strip().lower().startswith("ext="):
            keep.append(p.strip())
    return ";".join(keep).strip()


def _parse_reason(e: NumberParseException, region: str) -> str:
    reasons = {
        NumberParseException.INVALID_COUNTRY_CODE: (
            "unknown country code" if region else "no country code and no default region"
        ),
        NumberParseException.NOT_A_NUMBER: "not a phone number",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }
    return reasons.get(e.error_type, str(e))


@functools.lru_cache(maxsize=8192)
def display_format(e164: str, default_region: str) -> str:
    """How a person reads a stored E.164 number: national format for a number of the
    gateway's own region (``911 23 45 67``), international otherwise (``+1 415-555-0132``).
    Anything that does not parse is returned unchanged."""
    try:
        num = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    own = phonenumbers.region_code_for_number(num) == (default_region or "").upper()
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if own
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(num, fmt)
