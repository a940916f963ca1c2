"""Panel users: agents, supervisors and admins, with argon2 password hashes and extensions.

Passwords are hashed with argon2id (argon2-cffi) in a worker thread: a hash costs tens of
milliseconds of CPU by design and must not stall the event loop that carries call events.
A sign-in for a name that does not exist still verifies against a dummy hash, so the answer
takes as long as for a real user and says nothing about which names exist.
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
from gateway.store.db import Database

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
EXTENSION = re.compile(r"[0-9]{2,8}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
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
    """A user cannot be created or changed as asked; the message says which field and why."""


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


def check_extensions(extensions: Any) -> tuple[str, ...]:
    """Extensions as typed in a form or the CLI: digits only, no duplicates, at most 8."""
    if isinstance(extensions, str):
        extensions = [e for e in re.split(r"[\s,]+", extensions) if e]
    if not isinstance(extensions, list | tuple):
        raise UserError("extensions: expected a list of extension numbers")
    out: list[str] = []
    for ext in extensions:
        if not isinstance(ext, str) or not EXTENSION.fullmatch(ext):
            raise UserError(f"extensions: {str(ext)[:20]!r} is not an extension (2-8 digits)")
        if ext not in out:
            out.append(ext)
    if len(out) > 8:
        raise UserError("extensions: at most 8 per user")
    return tuple(out)


class UserRepository:
    """Reads and writes ``users``; verifies passwords."""

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
        username = (username or "").strip().lower()
        if not USERNAME.fullmatch(username):
            raise UserError(
                "username: expected 1-40 lower-case letters, digits, '.', '_' or '-', "
                f"found {username[:40]!r}"
            )
        try:
            role = Role(role)
        except ValueError:
            raise UserError(f"role: expected agent, supervisor or admin, found {role!r}") from None
        if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise UserError(f"password: expected at least {MIN_PASSWORD} characters")
        exts = check_extensions(extensions)
        display_name = (display_name or "").strip()[:80]
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        now = self.db.clock()
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT 1 FROM users WHERE username = ?", (username,)
            )
            if rows:
                raise UserError(f"username: {username!r} already exists")
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
