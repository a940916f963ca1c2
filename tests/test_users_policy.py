"""The password policy as a person choosing a password meets it, and the demo's users."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.panel.passwords import password_problem
from gateway.panel.users import (
    DEMO_PASSWORD,
    DEMO_USERS,
    UserError,
    UserRepository,
    seed_demo_users,
)
from gateway.store.db import Database
from tests.test_panel_support import FAST_HASHER

ANA = ("ana", "Ana García")


@pytest.mark.parametrize(
    ("password", "names", "code"),
    [
        ("password123", (), "password_common"),
        ("iloveyou2024", (), "password_common"),
        ("qwertyuiop", (), "password_common"),
        ("1234567890", (), "password_common"),
        ("aaaaaaaaaaaa", (), "password_weak"),
        ("Ana.Garcia-2024", ANA, "password_like_name"),  # "García" typed without the accent
        ("garcia101!x", ANA, "password_like_name"),
        ("4n4g4rc14-2024", ANA, "password_like_name"),  # leetspeak
        ("ana12345678", ANA, "password_like_name"),
        ("sofia.martin", ("sofia", "Sofía Martín"), "password_like_name"),
        ("Kq7-zR2", (), "password_too_short"),
        ("x" * 1025, (), "password_too_long"),
    ],
)
def test_refused_passwords_say_why(password: str, names: tuple[str, ...], code: str) -> None:
    problem = password_problem(password, names)
    assert problem is not None and problem.code == code
    assert problem.message.startswith("password: ") and password not in problem.message


@pytest.mark.parametrize(
    ("password", "names"),
    [
        ("correct horse battery", ANA),
        ("lighthouse marmalade tuba", ANA),
        ("ana loves long walks on the beach", ANA),  # the name is in it, but not all of it
        ("Bruno-picks-violet-kayaks", ("bruno", "Bruno Silva")),
        ("x7#Lq9!vR2@m" * 80, ANA),  # long: only the start is estimated, the rest adds
    ],
)
def test_good_passwords_pass(password: str, names: tuple[str, ...]) -> None:
    assert password_problem(password, names) is None


@pytest.mark.parametrize(("username", "name", "_role", "_ext"), DEMO_USERS)
def test_the_demo_password_passes_for_every_demo_user(
    username: str, name: str, _role: str, _ext: str
) -> None:
    assert password_problem(DEMO_PASSWORD, (username, name)) is None


async def test_the_demo_seeds_its_users_and_they_sign_in(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "demo.db")
    try:
        seeded = await seed_demo_users(db)
        repo = UserRepository(db)
        assert [u for u, _, _ in seeded] == [u[0] for u in DEMO_USERS]
        for username, password, _ in seeded:
            assert await repo.verify(username, password) is not None
    finally:
        await db.close()


async def test_a_refused_password_leaves_the_old_one_working(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "users.db")
    try:
        repo = UserRepository(db, FAST_HASHER)
        await repo.add("ana", "correct horse battery", "agent", ["101"], "Ana García")
        with pytest.raises(UserError) as refused:
            await repo.set_password("ana", "Garcia-2024!")
        assert refused.value.code == "password_like_name"
        assert await repo.verify("ana", "correct horse battery") is not None
        assert await repo.verify("ana", "Garcia-2024!") is None
    finally:
        await db.close()
