"""MySQL-family rotations against a real MariaDB (tests/fixtures/databases.py): verified TLS with the host
name checked, anonymous accounts removed, through the real engine and the local Key Vault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import TargetRefused
from shared.rotation.engine import STEPS
from tests.fixtures.databases import (
    Draws,
    MariaAdmin,
    current_value,
    rotate_now,
    strong_password,
    unique,
)
from tests.fixtures.rotation import versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")


def tags_for(maria: MariaAdmin, user: str, **extra: str) -> dict[str, str]:
    return {
        "ValidityPeriodDays": "60",
        "RotationType": "mysql",
        "CredentialId": user,
        "DbHost": f"127.0.0.1:{maria.server.port}",
        **extra,
    }


async def admin_secret(
    kv_client: Any, maria: MariaAdmin, *privileges: str, grant_option: bool = False
) -> tuple[str, str]:
    """A rotator account with exactly `privileges`, and its Key Vault secret (JSON with the host)."""
    admin, password = unique("rot"), strong_password()
    maria.create_user(admin, password)
    for privilege in privileges:
        suffix = " WITH GRANT OPTION" if grant_option else ""
        maria.run(f"GRANT {privilege} TO %s@'%%'{suffix}", (admin,))
    name = admin.replace("_", "-")
    await kv_client.set_secret(
        name,
        json.dumps({"username": admin, "password": password, "host": "127.0.0.1", "port": maria.server.port}),
    )
    return admin, name


def user_password(value: str) -> tuple[str, str]:
    data = json.loads(value)
    return data["username"], data["password"]


async def test_single_the_new_value_logs_in_the_old_does_not(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    user, old = unique(), strong_password()
    maria.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=tags_for(maria, user))
    for _ in range(2):
        result = await rotate_now(db_engine(), name, vault_clock)
        assert result.outcome == "Rotated", result.reason
        new = await current_value(kv_client, name)
        assert maria.logs_in(user, new) and not maria.logs_in(user, old)
        old = new


async def test_alternating_clone_keeps_the_previous_user_working_and_copies_grants_every_time(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    """The base user reads a database whose name contains ' TO ' (AWS's split-at-' TO ' bug); the clone is
    made on the first rotation with the same grants, and a grant added to the base later reaches the clone on
    the next rotation to it. The rotator has CREATE USER, SELECT on mysql (for SHOW GRANTS) and the
    privileges it copies WITH GRANT OPTION, no more."""
    user, old = unique("alt"), strong_password()
    database, extra_db = f"shop TO {user}", f"{user}_later"
    maria.run(f"CREATE DATABASE `{database}`")
    maria.run(f"CREATE DATABASE `{extra_db}`")
    maria.run(f"CREATE TABLE `{database}`.items (id INT)")
    maria.create_user(user, old)
    maria.run(f"GRANT SELECT ON `{database}`.* TO %s@'%%'", (user,))
    _, admin = await admin_secret(
        kv_client,
        maria,
        "CREATE USER ON *.*",
        "SELECT ON mysql.*",
        f"SELECT ON `{database}`.*",
        f"INSERT ON `{extra_db}`.*",
        grant_option=True,
    )
    name = user.replace("_", "-")
    tags = tags_for(maria, user, RotationStrategy="alternating", AdminSecret=admin)
    await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)
    seen: list[tuple[str, str]] = [(user, old)]
    for flip in range(3):
        if flip == 1:
            maria.run(f"GRANT INSERT ON `{extra_db}`.* TO %s@'%%'", (user,))
        result = await rotate_now(db_engine(), name, vault_clock)
        assert result.outcome == "Rotated", result.reason
        login = user_password(await current_value(kv_client, name))
        assert login[0] == (f"{user}_clone" if flip % 2 == 0 else user)
        assert maria.logs_in(*login)
        assert maria.logs_in(*seen[-1]), f"the previous user stopped working at flip {flip + 1}"
        props = (await kv_client.get_secret(name)).properties
        assert props.tags["CredentialId"] == login[0]
        seen.append(login)
    clone_grants = " ".join(row[0] for row in maria.run("SHOW GRANTS FOR %s@'%%'", (f"{user}_clone",)))
    assert f"SELECT ON `{database}`.*" in clone_grants and f"INSERT ON `{extra_db}`.*" in clone_grants


async def test_alternating_pair_needs_only_create_user_and_honours_the_account_host(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    """Two pre-provisioned accounts on host 127.0.0.1 (not '%'); the rotator has only CREATE USER."""
    first, second = unique("blue"), unique("green")
    old = strong_password()
    maria.create_user(first, old, host="127.0.0.1")
    maria.create_user(second, strong_password(), host="127.0.0.1")
    _, admin = await admin_secret(kv_client, maria, "CREATE USER ON *.*")
    name = first.replace("_", "-")
    tags = tags_for(
        maria,
        first,
        RotationStrategy="alternating",
        AdminSecret=admin,
        AlternateUser=second,
        DbUserHost="127.0.0.1",
    )
    await kv_client.set_secret(name, json.dumps({"username": first, "password": old}), tags=tags)
    expected = [second, first, second]
    for user in expected:
        assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
        login = user_password(await current_value(kv_client, name))
        assert login[0] == user and maria.logs_in(*login)
        props = (await kv_client.get_secret(name)).properties
        assert props.tags["AlternateUser"] == (first if user == second else second)


async def test_a_rotator_without_create_user_is_told_what_to_grant(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    first, second = unique("blue"), unique("green")
    old = strong_password()
    maria.create_user(first, old)
    maria.create_user(second, strong_password())
    _, admin = await admin_secret(kv_client, maria)  # no privileges at all
    name = first.replace("_", "-")
    tags = tags_for(maria, first, RotationStrategy="alternating", AdminSecret=admin, AlternateUser=second)
    await kv_client.set_secret(name, json.dumps({"username": first, "password": old}), tags=tags)
    with pytest.raises(TargetRefused, match=r"GRANT CREATE USER ON \*\.\* TO"):
        await rotate_now(db_engine(), name, vault_clock)
    assert maria.logs_in(first, old)


async def test_an_admin_secret_for_another_host_is_refused(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    user, old = unique("host"), strong_password()
    maria.create_user(user, old)
    admin = unique("rot").replace("_", "-")
    await kv_client.set_secret(
        admin, json.dumps({"username": "kvrot_root", "password": "x", "host": "other.example.com"})
    )
    name = user.replace("_", "-")
    tags = tags_for(maria, user, RotationStrategy="alternating", AdminSecret=admin)
    await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)
    with pytest.raises(TargetRefused, match=r"is for other\.example\.com:.*not the target 127\.0\.0\.1"):
        await rotate_now(db_engine(), name, vault_clock)


async def test_wrong_ca_is_terminal(
    kv_client: Any,
    db_engine: Any,
    vault_clock: Any,
    maria: MariaAdmin,
    maria_rotator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    from localdev.vault.tls import ensure_certificates
    from tests.fixtures.databases import use_db_ca

    use_db_ca(monkeypatch, ensure_certificates(tmp_path).ca_cert)
    user, old = unique("tls"), strong_password()
    maria.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=tags_for(maria, user))
    with pytest.raises(TargetRefused, match=r"TLS verification .*CERTIFICATE_VERIFY_FAILED.*never retries"):
        await rotate_now(db_engine(), name, vault_clock)
    assert maria.logs_in(user, old)


def test_the_tls_context_checks_the_certificate_and_the_host_name() -> None:
    """PyMySQL with only a CA file verifies nothing; the rotator hands it a context that verifies both (the
    server's certificate names 127.0.0.1 and localhost, so a name mismatch cannot be staged against it)."""
    import ssl

    from shared.rotation.rotators.mysql import _tls_context

    context = _tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


async def test_password_policy_rejection_draws_a_new_value(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any
) -> None:
    """simple_password_check (shipped with MariaDB) refuses a value without a digit and a mark."""
    user, old = unique("policy"), strong_password()
    maria.create_user(user, old)
    name = user.replace("_", "-")
    await kv_client.set_secret(name, old, tags=tags_for(maria, user))
    maria_rotator.draw = Draws("onlyLettersHereNothingElseAtAll")
    maria.run("INSTALL SONAME 'simple_password_check'")
    try:
        result = await rotate_now(db_engine(), name, vault_clock)
    finally:
        maria.run("UNINSTALL SONAME 'simple_password_check'")
    assert result.outcome == "Rotated", result.reason
    new = await current_value(kv_client, name)
    assert new != "onlyLettersHereNothingElseAtAll" and maria.logs_in(user, new)
    assert len(maria_rotator.draw.values) == 2
    assert sorted(v.enabled for v in await versions_of(kv_client, name)) == [False, True, True]


@pytest.mark.parametrize("length, accepted", [(128, True), (129, False)])
async def test_user_names_at_mariadbs_128_character_limit(
    kv_client: Any,
    db_engine: Any,
    vault_clock: Any,
    maria: MariaAdmin,
    maria_rotator: Any,
    length: int,
    accepted: bool,
) -> None:
    user = ("Ab'`\" " + unique("n"))[:length].ljust(length, "x")
    old = strong_password()
    if accepted:
        maria.create_user(user, old)
    name = unique("len").replace("_", "-")
    await kv_client.set_secret(name, old, tags=tags_for(maria, user))
    if accepted:
        assert (await rotate_now(db_engine(), name, vault_clock)).outcome == "Rotated"
        assert maria.logs_in(user, await current_value(kv_client, name))
    else:
        with pytest.raises(Exception, match="129 characters; the server's limit is 128"):
            await rotate_now(db_engine(), name, vault_clock)
        assert len(await versions_of(kv_client, name)) == 1


@pytest.mark.parametrize("strategy", ["single", "alternating"])
async def test_a_crash_at_every_step_boundary_converges(
    kv_client: Any, db_engine: Any, vault_clock: Any, maria: MariaAdmin, maria_rotator: Any, strategy: str
) -> None:
    class Crash(Exception):
        pass

    _, admin = await admin_secret(
        kv_client, maria, "CREATE USER ON *.*", "SELECT ON mysql.*", grant_option=True
    )
    for step in STEPS:
        user, old = unique("crash"), strong_password()
        maria.create_user(user, old)
        name = user.replace("_", "-")
        if strategy == "single":
            await kv_client.set_secret(name, old, tags=tags_for(maria, user))
        else:
            tags = tags_for(maria, user, RotationStrategy="alternating", AdminSecret=admin)
            await kv_client.set_secret(name, json.dumps({"username": user, "password": old}), tags=tags)

        async def crash(at: str, secret: str, step: str = step, name: str = name) -> None:
            if at == step and secret == name:
                raise Crash(step)

        with pytest.raises(Crash):
            await rotate_now(db_engine(hook=crash), name, vault_clock)
        if strategy == "alternating":
            assert maria.logs_in(user, old), f"the in-service user stopped working after a crash at {step}"
        rerun = await rotate_now(db_engine(), name, vault_clock)
        assert rerun.outcome in ("Rotated", "Resumed"), (step, rerun.reason)
        final = await current_value(kv_client, name)
        login = (user, final) if strategy == "single" else user_password(final)
        assert maria.logs_in(*login), f"not converged after a crash at {step}"
