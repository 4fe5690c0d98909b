"""The database rotators' tag contract, passwords and grant parsing: pure functions, no server."""

from __future__ import annotations

import string
import subprocess
import sys

import pytest

from shared.rotation.policy import PolicyError, RotationPolicy
from shared.rotation.rotators._database import PASSWORD_SPECIALS, generate_password, parse_target
from shared.rotation.rotators.mysql import grants_for


def target(kind: str = "postgresql", **tags: str):  # type: ignore[no-untyped-def]
    policy = RotationPolicy.from_tags({"RotationType": kind, "CredentialId": "app", **tags})
    assert policy is not None
    return parse_target(policy, kind, 63 if kind == "postgresql" else 128, "bytes")


def test_generated_passwords_meet_three_of_four_classes_and_break_no_connection_string() -> None:
    allowed = set(string.ascii_letters + string.digits + PASSWORD_SPECIALS)
    for _ in range(500):
        value = generate_password(16, "unreserved", "application")
        assert set(value) <= allowed and value[0].isalnum()
        assert all(
            sum(c in cls for c in value) >= 2
            for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits, PASSWORD_SPECIALS)
        )
        lowered = value.lower()
        assert not any("application"[i : i + 3] in lowered for i in range(len("application") - 2))
    assert set(generate_password(32, "alphanumeric", "x")) <= set(string.ascii_letters + string.digits)


def test_the_server_comes_from_the_arm_id_or_dbhost() -> None:
    arm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/Prod-DB"
    assert (target(ProviderAddress=arm).host, target(ProviderAddress=arm).port) == (
        "prod-db.postgres.database.azure.com",
        5432,
    )
    mysql_arm = arm.replace("DBforPostgreSQL", "DBforMySQL")
    assert target("mysql", ProviderAddress=mysql_arm).host == "prod-db.mysql.database.azure.com"
    with pytest.raises(PolicyError, match=r"names a Microsoft\.DBforMySQL resource, not a postgresql server"):
        target(ProviderAddress=mysql_arm)
    assert (target(DbHost="db.internal:6432").host, target(DbHost="db.internal:6432").port) == (
        "db.internal",
        6432,
    )
    assert (target(DbHost="[::1]:5433").host, target(DbHost="[::1]:5433").port) == ("::1", 5433)
    assert target(DbHost="db", ProviderAddress=arm).host == "db"  # DbHost overrides
    with pytest.raises(PolicyError, match=r"set ProviderAddress .* or DbHost"):
        target()
    with pytest.raises(PolicyError, match="invalid port"):
        target(DbHost="db:99999")


@pytest.mark.parametrize(
    "tags, message",
    [
        ({"DbHost": "db.example.com", "DbTls": "disable"}, "only for a loopback server"),
        ({"DbHost": "db", "DbTls": "prefer"}, "DbTls='prefer' must be one of: verify-full, disable"),
        (
            {"DbHost": "db", "RotationStrategy": "alternating", "ValueFormat": "password"},
            "set ValueFormat=json",
        ),
        ({"DbHost": "db", "RotationStrategy": "alternating"}, "needs AdminSecret"),
        (
            {"DbHost": "db", "RotationStrategy": "alternating", "AdminSecret": "a", "AlternateUser": "app"},
            "different",
        ),
        ({"DbHost": "db", "CredentialId": "bad\nname"}, "control character"),
        ({"DbHost": "db", "CredentialId": ""}, "empty"),
    ],
)
def test_unusable_tags_are_refused_naming_the_tag(tags: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        target(**tags)


def test_loopback_may_disable_tls_and_defaults_are_the_azure_samples() -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        assert target(DbHost=host, DbTls="disable").tls == "disable"
    default = target(DbHost="db")
    assert (default.tls, default.strategy, default.value_format, default.dbname) == (
        "verify-full",
        "single",
        "password",
        "postgres",
    )
    assert target("mysql", DbHost="db").dbname is None and target("mysql", DbHost="db").user_host == "%"


@pytest.mark.parametrize(
    "tags, message",
    [({"RotationAlphabet": "hex"}, "three character classes"), ({"RotationLength": "200"}, "from 16 to 128")],
)
def test_password_tags_that_azure_would_refuse_are_refused(tags: dict[str, str], message: str) -> None:
    from shared.rotation.rotators.postgresql import PostgresRotator

    policy = RotationPolicy.from_tags(
        {"RotationType": "postgresql", "CredentialId": "a", "DbHost": "db", **tags}
    )
    assert policy is not None
    with pytest.raises(PolicyError, match=message):
        PostgresRotator().validate(policy)


def test_grants_are_cut_at_the_exact_grantee_not_at_the_first_to() -> None:
    rows = [
        "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*7A1A'",
        "GRANT SELECT, INSERT ON `shop TO app`.* TO `app`@`%`",
        "GRANT SELECT ON `db\\_%`.`t` TO `app`@`%` WITH GRANT OPTION",
        "GRANT `reporting` TO `app`@`%`",
    ]
    assert grants_for(rows, "app", "%") == [
        ("GRANT SELECT, INSERT ON `shop TO app`.*", False),
        ("GRANT SELECT ON `db\\_%`.`t`", True),
        ("GRANT `reporting`", False),
    ]


def test_importing_the_app_loads_no_database_driver() -> None:
    code = "import sys, function_app; print(sorted(m for m in ('psycopg', 'pymysql') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_a_server_message_never_carries_the_password() -> None:
    import pymysql

    from shared.rotation.rotators.mysql import _statement_error

    secret = "Aa9-._~Bb8-._~Cc7"
    parse = pymysql.err.ProgrammingError(
        1064, f"You have an error in your SQL syntax near 'PASSWORD('{secret}')'"
    )
    other = pymysql.err.OperationalError(1105, f"something about '{secret}'")
    for exc in (parse, other):
        error = _statement_error(exc, "setting the password", "", secret)
        assert secret not in str(error) and secret not in getattr(error, "message", "")


async def test_mysql_8_names_are_held_to_32_characters_once_the_flavour_is_known() -> None:
    """No MySQL 8 server here: the flavour's limit is checked on the session the driver builds after login."""
    from shared.rotation.rotators.mysql import MySqlDriver, MySqlSession

    driver = MySqlDriver()
    await driver.check_user_names(MySqlSession(None, mariadb=False, user="rot"), ["u" * 32])
    with pytest.raises(PolicyError, match="33 characters; the server's limit is 32"):
        await driver.check_user_names(MySqlSession(None, mariadb=False, user="rot"), ["u" * 33])
    await driver.check_user_names(MySqlSession(None, mariadb=True, user="rot"), ["u" * 128])
