"""Panel users: agents, supervisors and admins, with argon2 password hashes and extensions.

Passwords are hashed with argon2id (argon2-cffi) in a worker thread: a hash costs tens of
milliseconds of CPU by design and must not stall the event loop that carries call events.
A sign-in for a name that does not exist still verifies against a dummy hash, so the answer
takes as long as for a real user and says nothing about which names exist.

New passwords pass the policy of ``passwords.py``. Disabling or deleting a user, or setting
their password, ends their sign-ins in the same transaction: no request can slip in between
with the old session. The last enabled admin can be neither disabled, deleted nor demoted,
so the gateway always keeps someone who can manage its users.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import GatewayError
from gateway.panel.passwords import password_problem
from gateway.store.db import Database

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
EXTENSION = re.compile(r"[0-9]{2,8}")
HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def sees_everyone(self) -> bool:
        """Supervisors and admins see every agent's calls, recordings and the live board."""
        return self is not Role.AGENT


class UserError(GatewayError):
    """A user cannot be created or changed as asked; the message says which field and why,
    ``code`` is a stable id for clients (``user_not_found``, ``password_common``, ...)."""

    def __init__(self, message: str, code: str = "invalid_user") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: Role
    extensions: tuple[str, ...]  # default extensions; a sign-in may choose others
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name or self.username,
            "role": self.role.value,
            "extensions": list(self.extensions),
        }


THEMES = ("auto", "light", "dark")


@dataclass(frozen=True, slots=True)
class Preferences:
    """A user's own panel settings, saved on the account. ``language`` None follows the
    browser; the languages that exist are the panel's catalogs (``available_languages``)."""

    language: str | None = None
    notifications: bool = True
    ring_sound: bool = True
    theme: str = "auto"

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "notifications": self.notifications,
            "ring_sound": self.ring_sound,
            "theme": self.theme,
        }


def check_extensions(extensions: Any) -> tuple[str, ...]:
    """Extensions as typed in a form or the CLI: digits only, no duplicates, at most 8."""
    if isinstance(extensions, str):
        extensions = [e for e in re.split(r"[\s,]+", extensions) if e]
    if not isinstance(extensions, list | tuple):
        raise UserError("extensions: expected a list of extension numbers", "invalid_extension")
    out: list[str] = []
    for ext in extensions:
        if not isinstance(ext, str) or not EXTENSION.fullmatch(ext):
            raise UserError(
                f"extensions: {str(ext)[:20]!r} is not an extension (2-8 digits)",
                "invalid_extension",
            )
        if ext not in out:
            out.append(ext)
    if len(out) > 8:
        raise UserError("extensions: at most 8 per user", "invalid_extension")
    return tuple(out)


def check_username(username: Any) -> str:
    """A user name as typed (trimmed, lower-cased); UserError when it cannot be one."""
    name = (username if isinstance(username, str) else "").strip().lower()
    if not USERNAME.fullmatch(name):
        raise UserError(
            "username: expected 1-40 lower-case letters, digits, '.', '_' or '-', "
            f"found {name[:40]!r}",
            "invalid_username",
        )
    return name


def check_role(role: Any) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(
            f"role: expected agent, supervisor or admin, found {str(role)[:20]!r}", "invalid_role"
        ) from None


def check_password(password: Any, username: str, display_name: str = "") -> None:
    """UserError (with the policy's code) unless ``password`` is acceptable for this user."""
    problem = password_problem(password, (username, display_name))
    if problem is not None:
        raise UserError(problem.message, problem.code)


def not_found(username: str) -> UserError:
    return UserError(f"user {username[:40]!r} does not exist", "user_not_found")


class UserRepository:
    """Reads and writes ``users``; verifies passwords; ends a user's sessions when their
    account or password changes."""

    def __init__(self, db: Database, hasher: PasswordHasher = HASHER) -> None:
        self.db = db
        self.hasher = hasher
        self._dummy_hash: str | None = None

    async def add(
        self,
        username: str,
        password: str,
        role: Role | str,
        extensions: Any = (),
        display_name: str = "",
    ) -> User:
        """Create a user; UserError when the name is taken or a field is not acceptable."""
        username = check_username(username)
        role = check_role(role)
        exts = check_extensions(extensions)
        display_name = _display_name(display_name)
        await asyncio.to_thread(check_password, password, username, display_name)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        now = self.db.clock()
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT 1 FROM users WHERE username = ?", (username,)
            )
            if rows:
                raise UserError(f"username: {username!r} already exists", "username_taken")
            await conn.execute(
                "INSERT INTO users (username, display_name, role, password_hash, extensions,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (username, display_name, role.value, hashed, json.dumps(exts), now, now),
            )
        return User(username, display_name, role, exts)

    async def get(self, username: str) -> User | None:
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT * FROM users WHERE username = ?", (username,)
            )
        )
        return _user(rows[0]) if rows else None

    async def all(self) -> list[User]:
        rows = await self.db.conn.execute_fetchall("SELECT * FROM users ORDER BY username")
        return [_user(r) for r in rows]

    async def session_counts(self) -> dict[str, int]:
        """Unexpired sign-ins per user name (users with none are absent)."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT username, COUNT(*) AS n FROM sessions WHERE expires_at > ? GROUP BY username",
            (self.db.clock(),),
        )
        return {r["username"]: r["n"] for r in rows}

    async def update(
        self,
        username: str,
        *,
        disabled: bool | None = None,
        role: Role | str | None = None,
        extensions: Any = None,
        display_name: str | None = None,
    ) -> tuple[User, int]:
        """Change what is given (None leaves a field alone); returns the user and how many of
        their sessions ended (disabling ends them all). UserError ``user_not_found``, or
        ``last_admin`` when the change would leave no enabled admin."""
        new_role = None if role is None else check_role(role)
        exts = None if extensions is None else check_extensions(extensions)
        name = None if display_name is None else _display_name(display_name)
        async with self.db.transaction() as conn:
            row = await _row(conn, username)
            current = _user(row)
            leaves_admins = disabled or new_role not in (None, Role.ADMIN)
            if current.role is Role.ADMIN and not current.disabled and leaves_admins:
                await _keep_an_admin(conn, current.username, "disable" if disabled else "demote")
            sets: dict[str, Any] = {}
            if disabled is not None:
                sets["disabled"] = int(disabled)
            if new_role is not None:
                sets["role"] = new_role.value
            if exts is not None:
                sets["extensions"] = json.dumps(exts)
            if name is not None:
                sets["display_name"] = name
            ended = 0
            if sets:
                sets["updated_at"] = self.db.clock()
                await conn.execute(
                    f"UPDATE users SET {', '.join(f'{k} = ?' for k in sets)} WHERE username = ?",
                    (*sets.values(), current.username),
                )
            if disabled:
                ended = await _end_sessions(conn, current.username)
            row = await _row(conn, current.username)
        return _user(row), ended

    async def set_disabled(self, username: str, disabled: bool) -> tuple[User, int]:
        """Disable (ending every session) or enable a user."""
        return await self.update(username, disabled=disabled)

    async def delete(self, username: str) -> int:
        """Remove a user and their sessions and presence; returns how many sessions ended.
        The calls they took keep their names in the call log."""
        async with self.db.transaction() as conn:
            current = _user(await _row(conn, username))
            if current.role is Role.ADMIN and not current.disabled:
                await _keep_an_admin(conn, current.username, "delete")
            ended = await _end_sessions(conn, current.username)
            await conn.execute("DELETE FROM agent_presence WHERE username = ?", (current.username,))
            await conn.execute("DELETE FROM users WHERE username = ?", (current.username,))
        return ended

    async def set_password(self, username: str, password: str, *, keep: str | None = None) -> int:
        """Set a new password (it must pass the policy) and end the user's sessions but the
        one whose token hash is ``keep`` (the person changing their own password stays
        signed in there); returns how many ended."""
        user = await self.get(username)
        if user is None:
            raise not_found(username)
        await asyncio.to_thread(check_password, password, user.username, user.display_name)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.transaction() as conn:
            await _row(conn, user.username)  # deleted meanwhile: user_not_found
            await conn.execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?",
                (hashed, self.db.clock(), user.username),
            )
            return await _end_sessions(conn, user.username, keep)

    async def preferences(self, username: str) -> Preferences:
        """The user's saved settings (defaults for a user who never changed any)."""
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT language, notifications, ring_sound, theme FROM users WHERE username = ?",
                (username,),
            )
        )
        if not rows:
            return Preferences()
        r = rows[0]
        return Preferences(
            r["language"], bool(r["notifications"]), bool(r["ring_sound"]), r["theme"]
        )

    async def set_preferences(self, username: str, prefs: Preferences) -> Preferences:
        """Save all of ``prefs`` (the caller validated them); UserError ``user_not_found``."""
        async with self.db.transaction() as conn:
            current = _user(await _row(conn, username))
            await conn.execute(
                "UPDATE users SET language = ?, notifications = ?, ring_sound = ?, theme = ?,"
                " updated_at = ? WHERE username = ?",
                (
                    prefs.language,
                    int(prefs.notifications),
                    int(prefs.ring_sound),
                    prefs.theme,
                    self.db.clock(),
                    current.username,
                ),
            )
        return prefs

    async def verify(self, username: str, password: str) -> User | None:
        """The user when the password is right and the account enabled; None otherwise."""
        username = (username or "").strip().lower()
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT * FROM users WHERE username = ?", (username[:40],)
            )
        )
        if not rows:
            await asyncio.to_thread(self._verify_hash, await self._dummy(), password)
            return None
        row = rows[0]
        ok = await asyncio.to_thread(self._verify_hash, row["password_hash"], password)
        if not ok or row["disabled"]:
            return None
        if self.hasher.check_needs_rehash(row["password_hash"]):
            hashed = await asyncio.to_thread(self.hasher.hash, password)
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?",
                    (hashed, self.db.clock(), username),
                )
        return _user(row)

    def _verify_hash(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash, "not a real password")
        return self._dummy_hash


def _display_name(value: Any) -> str:
    if not isinstance(value, str):
        raise UserError("display_name: expected text", "invalid_display_name")
    return value.strip()[:80]


async def _row(conn: Any, username: str) -> Any:
    name = (username if isinstance(username, str) else "").strip().lower()
    rows = list(await conn.execute_fetchall("SELECT * FROM users WHERE username = ?", (name,)))
    if not rows:
        raise not_found(name)
    return rows[0]


async def _keep_an_admin(conn: Any, username: str, action: str) -> None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username != ?",
            (username,),
        )
    )
    if rows[0][0] == 0:
        raise UserError(
            f"{username!r} is the only enabled admin; make another user admin before you "
            f"{action} this one",
            "last_admin",
        )


async def _end_sessions(conn: Any, username: str, keep: str | None = None) -> int:
    cur = await conn.execute(
        "DELETE FROM sessions WHERE username = ? AND token_hash != ?", (username, keep or "")
    )
    return int(cur.rowcount)


def _user(r: Any) -> User:
    return User(
        r["username"],
        r["display_name"],
        Role(r["role"]),
        tuple(json.loads(r["extensions"] or "[]")),
        bool(r["disabled"]),
    )


async def add_user(
    db: Database,
    username: str,
    password: str,
    role: str,
    extensions: Any = (),
    display_name: str = "",
) -> User:
    """What ``centralita user add`` calls; raises UserError with a message for the operator."""
    return await UserRepository(db).add(username, password, role, extensions, display_name)


DEMO_USERS = (
    ("ana", "Ana García", "agent", "101"),
    ("bruno", "Bruno Silva", "agent", "102"),
    ("carla", "Carla Romero", "agent", "103"),
    ("sofia", "Sofía Martín", "supervisor", "100"),
)
DEMO_PASSWORD = "centralita-demo"


async def seed_demo_users(db: Database) -> list[tuple[str, str, str]]:
    """The demo's users (username, password, extension); existing ones are left alone."""
    repo = UserRepository(db)
    out = []
    for username, name, role, ext in DEMO_USERS:
        if await repo.get(username) is None:
            await repo.add(username, DEMO_PASSWORD, role, [ext], name)
        out.append((username, DEMO_PASSWORD, ext))
    return out
