"""PostgreSQL rotations against a real server (tests/fixtures/databases.py): TLS verify-full, scram-sha-256,
log_statement=ddl, through the real engine and the local Key Vault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import TargetRefused, TargetUnavailable
from shared.rotation.engine import STEPS
from tests.fixtures.databases import (
    Draws,
    PgAdmin,
    current_value,
    rotate_now,
    strong_password,
    unique,
)
from tests.fixtures.rotation import versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


def single_tags(pg: PgAdmin, user: str, **extra: str) -> dict[str, str]:
    return {
        "ValidityPeriodDays": "60",
        "RotationType": "postgresql",
        "CredentialId": user,
        "DbHost": f"127.0.0.1:{pg.server.port}",
        **extra,
    }


async def test_single_the_new_value_logs_in_the_old_does_not_and_the_log_has_no_cleartext(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    user, old = unique(), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=single_tags(pg, user))
    result = await rotate_now(db_engine(), name, vault_clock)
    assert result.outcome == "Rotated", result.reason
    new = await current_value(kv_client, name)
    assert new != old and pg.logs_in(user, new) and not pg.logs_in(user, old)
    assert len(new) == 32 and sum(c in "-._~" for c in new) >= 2
    # The server's own statement log saw the rotator's ALTER ROLE, with a SCRAM verifier only.
    log = pg.server.log_text()
    assert f'ALTER ROLE "{user}" PASSWORD \'SCRAM-SHA-256$4096:' in log
    assert new not in log and all(value not in log for value in pg_rotator.draw.values)
    props = (await kv_client.get_secret(name)).properties
    assert props.tags["CredentialId"] == user and props.enabled


async def test_a_password_with_every_awkward_character_is_replaced(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    """The current password came from a human (quotes, backslash, $$, @:/;= and a space); the generated one
    uses every allowed mark (- . _ ~); both go through libpq's quoting."""
    user = unique()
    awkward = "it's a \\ back\"slash $$ @:/;= Aa9 ñ"
    pg.create_user(user, awkward)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, awkward, tags=single_tags(pg, user))
    pg_rotator.draw = Draws("Aa9-._~Bb8-._~Cc7-._~Dd6")
    assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
    assert pg.logs_in(user, "Aa9-._~Bb8-._~Cc7-._~Dd6") and not pg.logs_in(user, awkward)


@pytest.mark.parametrize(
    "user",
    [
        'Mixed Case "quoted" ' + "x" * 43,  # 63 bytes: needs quoting, at the limit
        "ä" * 31 + "z",  # 63 bytes of UTF-8 in 32 characters
    ],
)
async def test_names_needing_quotes_at_the_63_byte_limit(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any, user: str
) -> None:
    assert len(user.encode()) == 63
    password = strong_password()
    pg.create_user(user, password)
    name = unique("limit").replace("_", "-")
    await kv_client.set_secret(name, password, tags=single_tags(pg, user))
    assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
    assert pg.logs_in(user, await current_value(kv_client, name))


async def test_a_64_byte_name_is_refused_before_anything_is_written(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    name = unique("long").replace("_", "-")
    await kv_client.set_secret(name, strong_password(), tags=single_tags(pg, "x" * 64))
    with pytest.raises(Exception) as caught:
        await rotate_now(db_engine(), name, vault_clock)
    assert "64 bytes" in str(caught.value) and "63" in str(caught.value)
    assert len(await versions_of(kv_client, name)) == 1
    # The clone of a 58-byte base would be 64 bytes: refused too (PostgreSQL would truncate it silently).
    tags = {**single_tags(pg, "y" * 58), "RotationStrategy": "alternating", "AdminSecret": "whatever"}
    await kv_client.set_secret(name, json.dumps({"username": "y" * 58, "password": "p"}), tags=tags)
    with pytest.raises(Exception, match="clone user"):
        await rotate_now(db_engine(), name, vault_clock)


async def test_password_policy_rejection_draws_a_new_value(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    """The server preloads `passwordcheck`, which refuses a password equal to the user name even as a SCRAM
    verifier: the first draw is exactly that; the rotator checks the next one in a rolled-back transaction,
    the engine stores it before the server changes, and the test step applies it."""
    user = unique("policy")
    old = strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=single_tags(pg, user))
    pg_rotator.draw = Draws(user)
    result = await rotate_now(db_engine(), name, vault_clock)
    assert result.outcome == "Rotated", result.reason
    new = await current_value(kv_client, name)
    assert new not in (user, old) and pg.logs_in(user, new) and not pg.logs_in(user, user)
    assert len(pg_rotator.draw.values) == 2
    # original, the refused pending value (disabled, never promoted), the regenerated one in service
    versions = await versions_of(kv_client, name)
    assert sorted(v.enabled for v in versions) == [False, True, True]


async def test_wrong_ca_is_terminal_and_never_retried_in_plaintext(
    kv_client: Any,
    db_engine: Any,
    vault_clock: Any,
    pg: PgAdmin,
    pg_rotator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    from localdev.vault.tls import ensure_certificates
    from tests.fixtures.databases import use_db_ca

    use_db_ca(monkeypatch, ensure_certificates(tmp_path).ca_cert)
    user, old = unique("tls"), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=single_tags(pg, user))
    with pytest.raises(TargetRefused, match=r"TLS verification .* failed .*never retries without TLS"):
        await rotate_now(db_engine(), name, vault_clock)
    assert pg.logs_in(user, old)
    # A plaintext retry would have logged in (pg_hba admits host connections with or without TLS): the only
    # login of this user the server saw is the check just above.
    assert pg.server.log_text().count(f"connection authorized: user={user} ") == 1


async def test_an_unreachable_server_while_probing_is_retryable_not_not_applied(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    from localdev.databases import free_port

    user, old = unique("down"), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=single_tags(pg, user, DbHost=f"127.0.0.1:{free_port()}"))
    with pytest.raises(TargetUnavailable, match="cannot reach PostgreSQL"):
        await rotate_now(db_engine(), name, vault_clock)
    assert pg.logs_in(user, old)
    versions = await versions_of(kv_client, name)
    assert len(versions) == 2 and any(v.tags.get("RotationState") == "pending" for v in versions)


async def test_tls_disable_is_refused_for_a_remote_host_and_works_on_loopback(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    user, old = unique("plain"), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(
        name, old, tags=single_tags(pg, user, DbHost="db.example.com", DbTls="disable")
    )
    with pytest.raises(Exception, match="DbTls=disable is accepted only for a loopback server"):
        await rotate_now(db_engine(), name, vault_clock)
    await kv_client.set_secret(name, old, tags=single_tags(pg, user, DbTls="disable"))
    assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
    new = await current_value(kv_client, name)
    assert pg.logs_in(user, new)
    assert f"connection authorized: user={user} database=postgres application_name=keyvault-rotator" in (
        pg.server.log_text()
    )


async def test_single_resumes_from_the_previous_version_when_the_server_already_changed(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    """Neither the pending nor the current value logs in, the version before it does (someone restored an
    older password): the rotator logs in with that one and carries on; with none working it stops."""
    user, first = unique("prev"), strong_password()
    pg.create_user(user, first)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, first, tags=single_tags(pg, user))
    assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
    pg.run(f"ALTER ROLE {user} PASSWORD '{first}'")  # back to the value of the previous version
    assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
    assert pg.logs_in(user, await current_value(kv_client, name))
    pg.run(f"ALTER ROLE {user} PASSWORD '{strong_password()}'")  # a password the vault never held
    with pytest.raises(TargetRefused, match="no stored password logs in"):
        await rotate_now(db_engine(), name, vault_clock)


@pytest.mark.parametrize("strategy", ["single", "alternating"])
async def test_a_crash_at_every_step_boundary_converges_and_no_credential_is_lost(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any, strategy: str
) -> None:
    class Crash(Exception):
        pass

    admin = unique("rot")
    admin_password = strong_password()
    pg.create_user(admin, admin_password, "CREATEROLE")
    admin_secret = admin.replace("_", "-")
    await kv_client.set_secret(
        admin_secret,
        json.dumps(
            {"username": admin, "password": admin_password, "host": "127.0.0.1", "port": pg.server.port}
        ),
    )
    for step in STEPS:
        user, old = unique("crash"), strong_password()
        pg.create_user(user, old)
        name = user.replace("_", "-")
        if strategy == "single":
            await kv_client.set_secret(name, old, tags=single_tags(pg, user))
        else:
            value = json.dumps({"username": user, "password": old})
            tags = single_tags(pg, user, RotationStrategy="alternating", AdminSecret=admin_secret)
            await kv_client.set_secret(name, value, tags=tags)

        async def crash(at: str, secret: str, step: str = step, name: str = name) -> None:
            if at == step and secret == name:
                raise Crash(step)

        with pytest.raises(Crash):
            await rotate_now(db_engine(hook=crash), name, vault_clock)
        # In between: the in-service (newest enabled, not pending) version must log in for alternating; for
        # single the server may already hold the pending value (the window AWS documents) — but then the vault
        # holds it too: no credential is lost.
        serving = [
            v
            for v in await versions_of(kv_client, name)
            if v.enabled and v.tags.get("RotationState") != "pending"
        ]
        serving.sort(key=lambda v: v.created_on)
        value = (await kv_client.get_secret(name, serving[-1].version)).value
        login_user, password = (user, value) if strategy == "single" else _user_password(value)
        if strategy == "alternating" or step in ("decided", "pending_stored", "promoted"):
            assert pg.logs_in(login_user, password), (
                f"in-service version does not log in after crash at {step}"
            )
        else:
            drawn = pg_rotator.draw.values[-1]
            assert pg.logs_in(user, drawn) and not pg.logs_in(user, old), step
        rerun = await rotate_now(db_engine(), name, vault_clock)
        assert rerun.outcome in ("Rotated", "Resumed"), (step, rerun.reason)
        final = await current_value(kv_client, name)
        final_user, final_password = (user, final) if strategy == "single" else _user_password(final)
        assert pg.logs_in(final_user, final_password), f"not converged after a crash at {step}"


def _user_password(value: str) -> tuple[str, str]:
    data = json.loads(value)
    return data["username"], data["password"]


async def pg_admin_secret(kv_client: Any, pg: PgAdmin, *attributes: str) -> tuple[str, str]:
    """A rotator role with exactly `attributes` (e.g. CREATEROLE; never a superuser) and its secret."""
    admin, password = unique("rot"), strong_password()
    pg.create_user(admin, password, *attributes)
    name = admin.replace("_", "-")
    secret = {"username": admin, "password": password, "host": "127.0.0.1", "port": pg.server.port}
    await kv_client.set_secret(name, json.dumps(secret))
    return admin, name


async def test_alternating_clone_three_flips_overlap_and_objects_the_clone_creates(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    """The rotator role has CREATEROLE only (PostgreSQL 15: enough to create the clone IN ROLE base and set
    both passwords). The clone's sessions run as the base role, so a table the clone creates belongs to the
    base user; the previous user keeps logging in through each overlap."""
    from psycopg import sql

    user, old = unique("alt"), strong_password()
    pg.create_user(user, old)
    pg.run(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(user)))
    _, admin = await pg_admin_secret(kv_client, pg, "CREATEROLE")
    name = user.replace("_", "-")
    tags = single_tags(pg, user, RotationStrategy="alternating", AdminSecret=admin)
    await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)
    logins = [(user, old)]
    for flip in range(3):
        result = await rotate_now(db_engine(), name, vault_clock)
        assert result.outcome == "Rotated", result.reason
        value = json.loads(await current_value(kv_client, name))
        login = (value["username"], value["password"])
        assert login[0] == (f"{user}_clone" if flip % 2 == 0 else user)
        assert (
            value["host"] == "127.0.0.1" and value["port"] == pg.server.port and value["dbname"] == "postgres"
        )
        assert pg.logs_in(*login) and pg.logs_in(*logins[-1]), f"flip {flip + 1}"
        assert (await kv_client.get_secret(name)).properties.tags["CredentialId"] == login[0]
        logins.append(login)
    clone, base = logins[-1], logins[-2]
    table = f"made_by_clone_{user}"
    pg.run(f"CREATE TABLE {table} (id int)", user=clone[0], password=clone[1])
    pg.run(f"INSERT INTO {table} VALUES (1)", user=clone[0], password=clone[1])
    assert pg.run("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)) == [(user,)]
    assert pg.run(f"SELECT count(*) FROM {table}", user=base[0], password=base[1]) == [(1,)]
    pg.run(f"DROP TABLE {table}", user=base[0], password=base[1])
    log = pg.server.log_text()
    assert all(value not in log for value in pg_rotator.draw.values)


async def test_alternating_pair_mode_flips_the_two_users_and_the_tags(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    first, second = unique("blue"), unique("green")
    old = strong_password()
    pg.create_user(first, old)
    pg.create_user(second, strong_password())
    _, admin = await pg_admin_secret(kv_client, pg, "CREATEROLE")
    name = first.replace("_", "-")
    tags = single_tags(pg, first, RotationStrategy="alternating", AdminSecret=admin, AlternateUser=second)
    await kv_client.set_secret(name, json.dumps({"username": first, "password": old}), tags=tags)
    for expected in (second, first, second):
        assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
        value = json.loads(await current_value(kv_client, name))
        assert value["username"] == expected and pg.logs_in(expected, value["password"])
        props = (await kv_client.get_secret(name)).properties
        assert props.tags["CredentialId"] == expected
        assert props.tags["AlternateUser"] == (first if expected == second else second)
    assert pg.run("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (f"{first}%_clone",)) == [(0,)]


async def test_a_rotator_without_createrole_is_told_what_to_grant(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    first, second = unique("blue"), unique("green")
    old, other = strong_password(), strong_password()
    pg.create_user(first, old)
    pg.create_user(second, other)
    _, admin = await pg_admin_secret(kv_client, pg)  # LOGIN only
    name = first.replace("_", "-")
    tags = single_tags(pg, first, RotationStrategy="alternating", AdminSecret=admin, AlternateUser=second)
    await kv_client.set_secret(name, json.dumps({"username": first, "password": old}), tags=tags)
    with pytest.raises(TargetRefused, match=rf"CREATEROLE.*GRANT {second} TO rot_\w+ WITH ADMIN OPTION"):
        await rotate_now(db_engine(), name, vault_clock)
    assert pg.logs_in(first, old) and pg.logs_in(second, other)


async def test_alternating_refuses_an_admin_secret_for_another_server_and_a_broken_current(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    user, old = unique("guard"), strong_password()
    pg.create_user(user, old)
    admin = unique("rot").replace("_", "-")
    await kv_client.set_secret(
        admin, json.dumps({"username": "postgres", "password": "x", "host": "evil.example"})
    )
    name = user.replace("_", "-")
    tags = single_tags(pg, user, RotationStrategy="alternating", AdminSecret=admin)
    await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)
    with pytest.raises(TargetRefused, match=r"is for evil\.example:\d+, not the target 127\.0\.0\.1"):
        await rotate_now(db_engine(), name, vault_clock)
    # The current version no longer logs in: the admin is never used on its behalf (AWS's guard).
    _, good_admin = await pg_admin_secret(kv_client, pg, "CREATEROLE")
    tags = single_tags(pg, user, RotationStrategy="alternating", AdminSecret=good_admin)
    name = name + "-2"  # the first rotation left a pending version on the first name (resumed first)
    await kv_client.set_secret(
        name, json.dumps({"username": user, "password": "not-the-password"}), tags=tags
    )
    with pytest.raises(TargetRefused, match="current version no longer logs in"):
        await rotate_now(db_engine(), name, vault_clock)
    assert pg.run("SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"{user}_clone",)) == [(0,)]


async def test_describe_names_the_user_and_checks_reachability_without_writing(
    kv_client: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    from datetime import UTC, datetime

    from shared.rotation.policy import RotationPolicy
    from shared.rotation.rotators import RotationContext
    from shared.vault.versions import VersionInfo

    user, old = unique("plan"), strong_password()
    pg.create_user(user, old)
    admin_user, admin = await pg_admin_secret(kv_client, pg, "CREATEROLE")
    name = user.replace("_", "-")
    tags = single_tags(pg, user, RotationStrategy="alternating", AdminSecret=admin)
    value = json.dumps({"username": user, "password": old})
    stored = await kv_client.set_secret(name, value, tags=tags)

    async def read_value(version: str | None) -> str:
        return str((await kv_client.get_secret(name, version)).value)

    async def read_secret(other: str) -> str:
        return str((await kv_client.get_secret(other)).value)

    policy = RotationPolicy.from_tags(tags)
    assert policy is not None
    ctx = RotationContext(
        name,
        policy,
        VersionInfo.from_properties(stored.properties),
        "plan",
        datetime.now(UTC),
        read_value,
        read_secret=read_secret,
    )
    before = pg.run("SELECT count(*) FROM pg_roles")
    report = await pg_rotator.describe(ctx)
    assert report["userToChange"] == f"{user}_clone" and report["currentUser"] == user
    assert report["currentLogsIn"] and report["adminLogsIn"] and report["adminUser"] == admin_user
    assert report["targetReachable"] and report["problems"] == [] and report["writes"] is False
    assert pg.run("SELECT count(*) FROM pg_roles") == before
    assert len(await versions_of(kv_client, name)) == 1
    from localdev.databases import free_port

    down = RotationPolicy.from_tags({**tags, "DbHost": f"127.0.0.1:{free_port()}"})
    assert down is not None
    report = await pg_rotator.describe(ctx.__class__(**{**ctx.__dict__, "policy": down}))
    assert report["targetReachable"] is False and "cannot reach PostgreSQL" in report["problems"][0]


async def test_a_crash_after_the_regenerated_value_was_stored_but_before_it_was_applied_converges(
    kv_client: Any, db_engine: Any, vault_clock: Any, pg: PgAdmin, pg_rotator: Any
) -> None:
    """The regenerated value reaches the vault (`produced_stored`) before the server: a crash there leaves the
    server on the old password, and the next run applies the stored value."""

    class Crash(Exception):
        pass

    async def crash(at: str, secret: str) -> None:
        if at == "produced_stored":
            raise Crash(at)

    user, old = unique("regen"), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=single_tags(pg, user))
    pg_rotator.draw = Draws(user)  # refused by passwordcheck
    with pytest.raises(Crash):
        await rotate_now(db_engine(hook=crash), name, vault_clock)
    assert pg.logs_in(user, old)  # nothing applied yet
    rerun = await rotate_now(db_engine(), name, vault_clock)
    assert rerun.outcome == "Resumed", rerun.reason
    new = await current_value(kv_client, name)
    assert new == pg_rotator.draw.values[1] and pg.logs_in(user, new) and not pg.logs_in(user, old)
