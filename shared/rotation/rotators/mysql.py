"""MySQL-family users (Azure Database for MySQL Flexible Server, MySQL 8, MariaDB 10.6+), PyMySQL in a thread.

PyMySQL is blocking, so every exchange (connect, a few statements) runs in one `asyncio.to_thread` hop: a
rotation is a handful of statements, and one pure-Python driver is less to ship than aiomysql on top of it.
TLS is an explicit `ssl.SSLContext` (CERT_REQUIRED, host name checked, TLS 1.2+): PyMySQL given only a CA file
verifies nothing, and with no TLS options it negotiates opportunistically. With a context PyMySQL refuses a
server without TLS, so there is no plaintext fallback.

Passwords travel inside TLS as `ALTER USER … IDENTIFIED BY` (MySQL has no client-side verifier for
caching_sha2_password): keep the general log and audit plugins from recording user-management statements.
User names are checked against the flavour's limit (MySQL 32, MariaDB 128 characters) before any statement.

Privileges. single: none (the user sets its own password: MariaDB `SET PASSWORD = PASSWORD(…)`, MySQL
`ALTER USER CURRENT_USER() IDENTIFIED BY …`). alternating: the admin needs `CREATE USER` (`ALTER USER` for
another account); clone mode also `SELECT ON mysql.*` (SHOW GRANTS of another user) and the privileges it
copies to the clone `WITH GRANT OPTION` - prefer the pre-provisioned pair (AlternateUser): it needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...errors import TargetRefused, TargetUnavailable
from ._database import AuthFailed, DatabaseRotator, DbTarget, PolicyRejected, check_name

T = TypeVar("T")

MYSQL_NAME_LIMIT = 32
MARIADB_NAME_LIMIT = 128
CONNECT_TIMEOUT = 10
IO_TIMEOUT = 30

# MySQL client/server error numbers that matter here.
ER_ACCESS_DENIED = 1045  # wrong user/password
# The same refusal when the client sent no scrambled password, e.g. after MariaDB switched an unknown user
# to a random auth plugin (it hides which accounts exist): still "this credential does not log in".
ER_ACCESS_DENIED_NO_PASSWORD = 1698
ER_DBACCESS_DENIED = 1044
ER_SPECIFIC_ACCESS_DENIED = 1227  # "you need (at least one of) the … privilege(s)"
ER_TABLEACCESS_DENIED = 1142
ER_PASSWORD_NO_MATCH = 1133
ER_CANNOT_USER = 1396
ER_NOT_VALID_PASSWORD = 1819  # validate_password / simple_password_check / cracklib
ER_BAD_DB = 1049
ER_HOST_NOT_PRIVILEGED = 1130
ER_SECURE_TRANSPORT_REQUIRED = 3159
CR_SSL_CONNECTION_ERROR = 2026
_TRANSIENT = {1040, 1203, 1205, 1213, 2002, 2003, 2006, 2013, 2055, 1053, 1077, 1078, 1079, 1080}
_DENIED = {ER_DBACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED, ER_TABLEACCESS_DENIED, 1143, 1410}


def _tls_context(ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _errno(exc: BaseException) -> int:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _message(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return str(args[1] if len(args) > 1 else exc)[:300]


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or (
            isinstance(seen, ssl.SSLError) and "CERTIFICATE" in str(seen).upper()
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "hostname mismatch" in str(exc).lower()


def _connect_error(exc: BaseException, target: DbTarget, user: str) -> Exception:
    where = f"{target.host}:{target.port}"
    number = _errno(exc)
    if number in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        return AuthFailed()
    if _tls_failure(exc) or number == CR_SSL_CONNECTION_ERROR:
        return TargetRefused(
            f"TLS verification of {where} failed ({_message(exc)}); the rotator never retries without TLS. "
            "Put "
            "the server's root CA in the file DB_CA_BUNDLE names, and use the host name the certificate "
            "carries"
        )
    if number == ER_BAD_DB:
        return TargetRefused(f"{where}: {_message(exc)}; set the DbName tag to an existing database")
    if number in (ER_HOST_NOT_PRIVILEGED, ER_SECURE_TRANSPORT_REQUIRED):
        return TargetRefused(f"{where} does not admit {user} from this app: {_message(exc)}")
    return TargetUnavailable(
        f"cannot reach MySQL at {where}: {_message(exc)} (error {number}); the next run retries"
    )


ER_PARSE_ERROR = 1064


def _statement_error(
    exc: BaseException, action: str, privilege_hint: str, password: str | None = None
) -> Exception:
    """The mapped error; its text never carries the password (a parse error quotes the statement, so its
    server text is dropped, and any other text is scrubbed of the value)."""
    number = _errno(exc)
    text = "the server could not parse the statement" if number == ER_PARSE_ERROR else _message(exc)
    if password:
        text = text.replace(password, "***")
    if number == ER_NOT_VALID_PASSWORD:
        return PolicyRejected(text)
    if number in _DENIED:
        return TargetRefused(f"{action}: {text}; {privilege_hint}")
    if number in _TRANSIENT or number >= 2000:  # client-side errors: lost connection, timeouts
        return TargetUnavailable(f"{action}: {text}; the next run retries")
    return TargetRefused(f"{action}: {text} (error {number})")


def _grantee(user: str, host: str) -> str:
    return f"`{user.replace('`', '``')}`@`{host.replace('`', '``')}`"


def grants_for(rows: list[str], user: str, host: str) -> list[tuple[str, bool]]:
    """SHOW GRANTS rows as (statement head, with grant option), the grantee cut at its exact quoted form (a
    database named `a TO b` would break a split at ' TO '). The USAGE row (only the account) is dropped."""
    suffix = " TO " + _grantee(user, host)
    out: list[tuple[str, bool]] = []
    for row in rows:
        index = row.rfind(suffix)
        if index < 0:
            raise TargetRefused(
                f"cannot read the grant {row[:80]!r} of {user}@{host}; copy the grants by hand"
            )
        head, tail = row[:index], row[index + len(suffix) :]
        with_grant = "WITH GRANT OPTION" in tail.upper()
        if head.strip().upper() == "GRANT USAGE ON *.*" and not with_grant:
            continue
        out.append((head, with_grant))
    return out


@dataclass
class MySqlSession:
    connection: Any
    mariadb: bool
    user: str

    @property
    def name_limit(self) -> int:
        return MARIADB_NAME_LIMIT if self.mariadb else MYSQL_NAME_LIMIT


class MySqlDriver:
    kind = "mysql"
    name_unit = "characters"
    name_limit = MARIADB_NAME_LIMIT  # the family's largest; the flavour's own is checked once connected

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)

    async def connect(self, target: DbTarget, ca: str | None, user: str, password: str) -> MySqlSession:
        import pymysql

        def work() -> MySqlSession:
            options: dict[str, Any] = {
                "host": target.host,
                "port": target.port,
                "user": user,
                "password": password,
                "connect_timeout": CONNECT_TIMEOUT,
                "read_timeout": IO_TIMEOUT,
                "write_timeout": IO_TIMEOUT,
                "autocommit": True,
                "charset": "utf8mb4",
            }
            if target.dbname:
                options["database"] = target.dbname
            if target.tls == "verify-full":
                options["ssl"] = _tls_context(ca)
            else:
                options["ssl_disabled"] = True  # loopback only (checked with the tags)
            connection = pymysql.connect(**options)
            return MySqlSession(connection, "mariadb" in connection.get_server_info().lower(), user)

        try:
            return await self._run(work)
        except pymysql.err.Error as exc:
            raise _connect_error(exc, target, user) from None
        except (OSError, ssl.SSLError) as exc:
            if _tls_failure(exc):
                raise _connect_error(exc, target, user) from None
            raise TargetUnavailable(
                f"cannot reach MySQL at {target.host}:{target.port}: {exc}; the next run retries"
            ) from None

    async def close(self, session: Any) -> None:
        def work() -> None:
            with contextlib.suppress(Exception):  # already broken: must not mask the error being raised
                session.connection.close()

        await self._run(work)

    async def check_user_names(self, session: Any, names: list[str]) -> None:
        for name in names:
            check_name(name, "the user name", session.name_limit, unit="characters")

    async def set_own_password(self, session: Any, target: DbTarget, user: str, password: str) -> None:
        import pymysql

        statement = (
            "SET PASSWORD = PASSWORD(%s)" if session.mariadb else "ALTER USER CURRENT_USER() IDENTIFIED BY %s"
        )

        def work() -> None:
            with session.connection.cursor() as cursor:
                cursor.execute(statement, (password,))

        try:
            await self._run(work)
        except pymysql.err.Error as exc:
            raise _statement_error(
                exc, f"{user} could not change its own password", "check the account", password
            ) from None

    async def set_password(
        self, session: Any, target: DbTarget, user: str, password: str, *, clone_of: str | None
    ) -> None:
        import pymysql

        host = target.user_host
        admin = session.user

        def work() -> None:
            with session.connection.cursor() as cursor:
                if clone_of is not None:
                    # Created once (IF NOT EXISTS never resets a password), grants re-synced every time.
                    cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
                    self._sync_grants(cursor, clone_of, user, host)
                cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))

        hint = f"GRANT CREATE USER ON *.* TO '{admin}'@'%'" + (
            f", GRANT SELECT ON mysql.* TO '{admin}'@'%' (SHOW GRANTS of another user needs it), and the "
            "privileges it copies to the clone WITH GRANT OPTION (or pre-provision the pair: AlternateUser)"
            if clone_of
            else ""
        )
        try:
            await self._run(work)
        except pymysql.err.Error as exc:
            if _errno(exc) == ER_CANNOT_USER:
                raise TargetRefused(
                    f"the account '{user}'@'{host}' does not exist on {target.host}; create it or fix "
                    "CredentialId/AlternateUser/DbUserHost"
                ) from None
            raise _statement_error(
                exc, f"{admin} could not set the password of '{user}'@'{host}'", hint, password
            ) from None

    @staticmethod
    def _sync_grants(cursor: Any, base: str, clone: str, host: str) -> None:
        cursor.execute("SHOW GRANTS FOR %s@%s", (base, host))
        wanted = grants_for([row[0] for row in cursor.fetchall()], base, host)
        cursor.execute("SHOW GRANTS FOR %s@%s", (clone, host))
        have = grants_for([row[0] for row in cursor.fetchall()], clone, host)
        if sorted(wanted) == sorted(have):
            return
        cursor.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (clone, host))
        for head, with_grant in wanted:
            # The head is server-quoted SQL; '%' is doubled because PyMySQL formats the statement with %.
            statement = head.replace("%", "%%") + " TO %s@%s" + (" WITH GRANT OPTION" if with_grant else "")
            cursor.execute(statement, (clone, host))

    async def policy_accepts(self, session: Any, target: DbTarget, user: str, password: str) -> bool | None:
        # MySQL-family DDL is not transactional, so there is no way to ask without changing something.
        return None

    async def verify(self, session: Any, target: DbTarget, user: str, *, clone_of: str | None) -> None:
        import pymysql

        def work() -> None:
            with session.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()

        try:
            await self._run(work)
        except pymysql.err.Error as exc:
            raise _statement_error(exc, f"testing the login of {user}", "") from None


class MySqlRotator(DatabaseRotator):
    """RotationType=mysql (MySQL 8 and MariaDB)."""

    rotation_type = "mysql"

    def __init__(self) -> None:
        super().__init__()
        self.driver = MySqlDriver()
