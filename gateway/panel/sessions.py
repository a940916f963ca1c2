"""Panel sign-ins: a random token in an HttpOnly cookie, its SHA-256 in the store.

The token is 32 random bytes; the database keeps only its hash, so neither a copy of the file
nor a log line can be turned into a session. A session carries the extensions chosen at
sign-in (hot desk) and ends at logout or after ``ttl`` seconds (one shift by default).

A user holds at most ``max_per_user`` sessions (browsers or devices; the tabs of one browser
share one). A sign-in beyond that ends the user's oldest session, so a forgotten browser on
another desk is signed out rather than the person now at the keyboard being turned away.
Disabling a user, deleting them or setting their password ends their sessions
(``users.py``); a session of a disabled user is refused even before that.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.panel.users import Role, User
from gateway.store.db import Database

COOKIE = "centralita_session"
MAX_SESSIONS_PER_USER = 5


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in user as the routes see them."""

    username: str
    display_name: str
    role: Role
    extensions: tuple[str, ...]
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name or self.username,
            "role": self.role.value,
            "extensions": list(self.extensions),
            "expires_at": self.expires_at,
        }


class SessionStore:
    """Creates, finds and ends sessions in the ``sessions`` table."""

    def __init__(
        self, db: Database, ttl: float = 12 * 3600, max_per_user: int = MAX_SESSIONS_PER_USER
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.max_per_user = max(1, max_per_user)

    async def create(self, user: User, extensions: tuple[str, ...]) -> tuple[str, Session]:
        """A new session for ``user``: the cookie value (shown once) and the session. The
        user's oldest sessions end when this one takes them over ``max_per_user``."""
        token = secrets.token_urlsafe(32)
        now = self.db.clock()
        expires = now + self.ttl
        new = token_hash(token)
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            await conn.execute(
                "INSERT INTO sessions (token_hash, username, extensions, created_at, expires_at,"
                " last_seen) VALUES (?,?,?,?,?,?)",
                (new, user.username, json.dumps(list(extensions)), now, expires, now),
            )
            # the new session always stays, even beside others of the same clock tick
            await conn.execute(
                "DELETE FROM sessions WHERE username = ? AND token_hash <> ? AND token_hash"
                " NOT IN (SELECT token_hash FROM sessions WHERE username = ? AND token_hash <> ?"
                " ORDER BY created_at DESC, token_hash LIMIT ?)",
                (user.username, new, user.username, new, self.max_per_user - 1),
            )
        return token, Session(user.username, user.display_name, user.role, extensions, expires)

    async def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT s.extensions AS s_ext, s.expires_at, u.* FROM sessions s"
                " JOIN users u ON u.username = s.username WHERE s.token_hash = ?",
                (token_hash(token),),
            )
        )
        if not rows:
            return None
        r = rows[0]
        if r["expires_at"] <= self.db.clock() or r["disabled"]:
            return None
        return _session(r)

    async def end(self, token: str | None) -> str | None:
        """Delete the session; returns its user name (None when there was none)."""
        if not token:
            return None
        h = token_hash(token)
        async with self.db.transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT username FROM sessions WHERE token_hash = ?", (h,)
                )
            )
            await conn.execute("DELETE FROM sessions WHERE token_hash = ?", (h,))
        return rows[0][0] if rows else None

    async def active(self) -> list[Session]:
        """Every unexpired session (to rebuild who sits at which extension after a restart)."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT s.extensions AS s_ext, s.expires_at, u.* FROM sessions s"
            " JOIN users u ON u.username = s.username WHERE s.expires_at > ? AND u.disabled = 0"
            " ORDER BY s.created_at",
            (self.db.clock(),),
        )
        return [_session(r) for r in rows]


def _session(r: Any) -> Session:
    return Session(
        r["username"],
        r["display_name"],
        Role(r["role"]),
        tuple(json.loads(r["s_ext"] or "[]")),
        r["expires_at"],
    )
