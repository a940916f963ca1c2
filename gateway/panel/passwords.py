"""Password policy for panel users: long enough, not a common password, not the user's name.

zxcvbn (Dropbox's estimator) ships frequency lists of leaked passwords, English words, first
names and surnames, and models keyboard walks, dates and repeats; it estimates how many
guesses an attacker would need, and takes the user's own words (user name, display name) as
an extra dictionary. Its own-words match misses names with accents ("García") and a name
followed by digits, so a plain check also folds accents and leetspeak and refuses a password
that is mostly the user's names.

Each refusal carries a stable ``code`` (clients translate on it) and an English message that
says why; the password itself never appears in either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 1024
# zxcvbn score 3 is about 10^8 guesses: out of reach of an online attack that the sign-in rate
# limit slows to a few tries a minute, and costly offline against argon2id
MIN_SCORE = 3
# zxcvbn refuses longer input and its cost grows with length; the first 72 characters of a
# longer password decide (the rest only adds strength)
ESTIMATED_PREFIX = 72
# what is left of a password once the user's names are taken out must still be this long
MIN_REMAINDER = 6
_LEET = str.maketrans("0134579@$!|+", "oieastgasilt")
_NAME_PART = re.compile(r"[^\W_]{3,}")


@dataclass(frozen=True, slots=True)
class PasswordProblem:
    """Why a password is refused: a stable code and a message for the person choosing it."""

    code: str
    message: str


def password_problem(password: str, user_inputs: Iterable[str] = ()) -> PasswordProblem | None:
    """None when ``password`` is acceptable for a user with these names; else why not."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        return PasswordProblem(
            "password_too_short", f"password: expected at least {MIN_LENGTH} characters"
        )
    if len(password) > MAX_LENGTH:
        return PasswordProblem(
            "password_too_long", f"password: expected at most {MAX_LENGTH} characters"
        )
    names = _name_parts(user_inputs)
    if _mostly_names(password, names):
        return PasswordProblem(
            "password_like_name",
            "password: it is mostly the user name or the person's name; "
            "choose one that has nothing to do with them",
        )
    result = zxcvbn(password[:ESTIMATED_PREFIX], user_inputs=sorted(names))
    if result["score"] >= MIN_SCORE:
        return None
    matches = result["sequence"]
    if any(m.get("dictionary_name") == "user_inputs" for m in matches):
        return PasswordProblem(
            "password_like_name",
            "password: it is built on the user name or the person's name; "
            "choose one that has nothing to do with them",
        )
    if any(m.get("dictionary_name") == "passwords" for m in matches):
        return PasswordProblem(
            "password_common",
            "password: it is (or is built on) one of the most common passwords, the first "
            "ones an attacker tries; choose a few unrelated words instead",
        )
    hint = result["feedback"]["warning"] or "it would be guessed quickly"
    return PasswordProblem(
        "password_weak",
        f"password: too easy to guess ({hint.rstrip('.')}); add a few unrelated words",
    )


def _fold(text: str) -> str:
    """Lower case without accents: "García" -> "garcia"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _name_parts(user_inputs: Iterable[str]) -> set[str]:
    """The user name and display name, whole and word by word, folded ("ana.garcia" gives
    "ana.garcia", "ana" and "garcia")."""
    parts: set[str] = set()
    for text in user_inputs:
        folded = _fold(text or "").strip()
        if len(folded) >= 3:
            parts.add(folded)
        parts.update(_NAME_PART.findall(folded))
    return parts


def _mostly_names(password: str, names: set[str]) -> bool:
    """True when, once every name part is taken out, too little of the password is left
    ("Ana.Garcia-2024", "garcia101!", "4n4g4rc14"); looked at as typed and with leetspeak
    read back as letters."""
    if not names:
        return False
    plain = re.sub(r"[\W_]", "", _fold(password))
    words = sorted({re.sub(r"[\W_]", "", n) for n in names} - {""}, key=len, reverse=True)
    for candidate in (plain, plain.translate(_LEET)):
        rest = candidate
        for word in words:
            rest = rest.replace(word, "")
        if rest != candidate and (len(rest) < MIN_REMAINDER or rest.isdigit()):
            return True
    return False
