"""PostgreSQL users (Azure Database for PostgreSQL Flexible Server or any PostgreSQL 12+), psycopg 3 async.

The password reaches the server only as a SCRAM-SHA-256 verifier computed here (libpq's
PQencryptPasswordConn), so neither `log_statement`, pg_stat_activity nor an audit extension ever sees the
cleartext. Identifiers are quoted with psycopg.sql and checked against the 63-byte limit before any DDL
(PostgreSQL would silently truncate). TLS is `sslmode=verify-full` (root CAs from DB_CA_BUNDLE, else the
system store), with no plaintext retry.

Privileges. single: none (any role may change its own password). alternating: the admin secret's role needs
CREATEROLE, and on PostgreSQL 16+ ADMIN OPTION on each user it changes (`GRANT app TO rotator WITH ADMIN
OPTION, INHERIT FALSE, SET FALSE`: manage, not act as), also on the base role to create its clone; the clone it
creates it administers automatically. Never use the server admin.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ...errors import TargetRefused, TargetUnavailable
from ._database import AuthFailed, DatabaseRotator, DbTarget, PolicyRejected, check_name

NAME_LIMIT = 63  # NAMEDATALEN - 1, in bytes
CONNECT_TIMEOUT = 10
# SQLSTATE classes that say "try again later": connection, resources, operator, lock/serialization.
_TRANSIENT_CLASSES = ("08", "40", "53", "55", "57", "58")
_TLS_FATAL = (
    "certificate verify failed",
    "does not match host name",
    "server certificate for",
    "server does not support ssl",
    "root certificate file",
    "sslrootcert",
    "certificate has expired",
)


def _connect_error(exc: Exception, target: DbTarget, user: str) -> Exception:
    text = str(exc)
    lowered = text.lower()
    where = f"{target.host}:{target.port}"
    if "password authentication failed" in lowered:
        return AuthFailed()
    if any(marker in lowered for marker in _TLS_FATAL):
        return TargetRefused(
            f"TLS verification of {where} failed ({_brief(text)}); the rotator never retries without TLS. "
            "Put the "
            "server's root CA in the file DB_CA_BUNDLE names, and use the host name the certificate carries"
        )
    if "no pg_hba.conf entry" in lowered or "pg_hba.conf rejects" in lowered:
        return TargetRefused(
            f"{where} does not admit {user} from this app ({_brief(text)}); add a firewall rule / hostssl "
            "line "
            "for the app's outbound addresses"
        )
    if "does not exist" in lowered and "database" in lowered:
        return TargetRefused(f"{where}: {_brief(text)}; set the DbName tag to an existing database")
    if "not permitted to log in" in lowered:
        return TargetRefused(f"{where}: {_brief(text)}; run ALTER ROLE {user} LOGIN")
    return TargetUnavailable(f"cannot reach PostgreSQL at {where}: {_brief(text)}; the next run retries")


def _brief(text: str) -> str:
    """libpq's message without the 'connection failed: connection to server at … failed:' preamble."""
    last = text.strip().splitlines()[0] if text.strip() else text
    if "failed: " in last:
        last = last.rsplit("failed: ", 1)[1]
    return last.replace("FATAL:", "").strip()[:300]


def _statement_error(exc: Exception, action: str, privilege_hint: str) -> Exception:
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    message = str(getattr(diag, "message_primary", None) or exc).strip()
    detail = getattr(diag, "message_detail", None)
    message = (f"{message} ({detail.strip()})" if detail else message)[:400]
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return TargetRefused(f"{action}: {message}; {privilege_hint}")
    if sqlstate in ("22023", "28P01"):  # passwordcheck, credcheck and friends
        return PolicyRejected(message)
    if isinstance(exc, psycopg.OperationalError) or sqlstate[:2] in _TRANSIENT_CLASSES:
        return TargetUnavailable(f"{action}: {message}; the next run retries")
    return TargetRefused(f"{action}: {message} (SQLSTATE {sqlstate or 'none'})")


def _admin_hint(admin: str, user: str) -> str:
    return (
        f"grant the rotator what it needs: ALTER ROLE {admin} CREATEROLE, and on PostgreSQL 16 or later "
        f"GRANT {user} TO {admin} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE (it may then manage {user} "
        "without acting as it)"
    )


class PostgresDriver:
    kind = "postgresql"
    name_unit = "bytes"
    name_limit = NAME_LIMIT

    async def connect(self, target: DbTarget, ca: str | None, user: str, password: str) -> Any:
        import psycopg
        from psycopg.conninfo import make_conninfo

        params: dict[str, Any] = {
            "host": target.host,
            "port": str(target.port),
            "dbname": target.dbname or "postgres",
            "user": user,
            "password": password,
            "connect_timeout": str(CONNECT_TIMEOUT),
            "application_name": "keyvault-rotator",
        }
        if target.tls == "verify-full":
            if ca is None and psycopg.pq.version() < 160000:
                raise TargetRefused(
                    "this libpq cannot use the system CA store (needs libpq 16+); set the app setting "
                    "DB_CA_BUNDLE to a PEM file with the server's root CAs"
                )
            params.update(sslmode="verify-full", sslrootcert=ca or "system")
        else:
            params["sslmode"] = "disable"  # loopback only (checked with the tags)
        try:
            return await psycopg.AsyncConnection.connect(make_conninfo(**params), autocommit=True)
        except psycopg.OperationalError as exc:
            raise _connect_error(exc, target, user) from None
        except OSError as exc:
            raise TargetUnavailable(
                f"cannot reach PostgreSQL at {target.host}:{target.port}: {exc.strerror or exc}; the next "
                "run retries"
            ) from None

    async def close(self, session: Any) -> None:
        with contextlib.suppress(Exception):  # a broken connection must not mask the error being raised
            await session.close()

    async def check_user_names(self, session: Any, names: list[str]) -> None:
        for name in names:
            check_name(name, "the user name", NAME_LIMIT)

    @staticmethod
    def _verifier(session: Any, user: str, password: str) -> str:
        # The algorithm is explicit: with None libpq would ask the server (a blocking query in async code).
        raw: bytes = session.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
        return raw.decode()

    async def _alter_password(self, session: Any, user: str, password: str) -> None:
        from psycopg import sql

        verifier = self._verifier(session, user, password)
        await session.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))
        )

    async def set_own_password(self, session: Any, target: DbTarget, user: str, password: str) -> None:
        import psycopg

        try:
            await self._alter_password(session, user, password)
        except psycopg.Error as exc:
            raise _statement_error(
                exc, f"{user} could not change its own password", "check that the role may log in"
            ) from None

    async def set_password(
        self, session: Any, target: DbTarget, user: str, password: str, *, clone_of: str | None
    ) -> None:
        import psycopg
        from psycopg import sql

        admin = session.info.user
        try:
            async with session.transaction():
                exists = await (
                    await session.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
                ).fetchone()
                if clone_of is not None:
                    if exists is None:
                        await session.execute(
                            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                                sql.Identifier(user), sql.Identifier(clone_of)
                            )
                        )
                    else:
                        member = await (
                            await session.execute(
                                "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                                "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
                                (clone_of, user),
                            )
                        ).fetchone()
                        if member is None:
                            await session.execute(
                                sql.SQL("GRANT {} TO {}").format(
                                    sql.Identifier(clone_of), sql.Identifier(user)
                                )
                            )
                    # The clone's sessions act as the base role, so what it creates the base role owns.
                    await session.execute(
                        sql.SQL("ALTER ROLE {} SET role TO {}").format(
                            sql.Identifier(user), sql.Literal(clone_of)
                        )
                    )
                elif exists is None:
                    raise TargetRefused(
                        f"the user {user} does not exist on {target.host}; create it (CREATE ROLE {user} "
                        "LOGIN) or "
                        "fix the tags"
                    )
                await self._alter_password(session, user, password)
        except psycopg.Error as exc:
            hint = _admin_hint(admin, clone_of or user)
            raise _statement_error(exc, f"{admin} could not set the password of {user}", hint) from None

    async def policy_accepts(self, session: Any, target: DbTarget, user: str, password: str) -> bool | None:
        """The same ALTER ROLE in a transaction always rolled back: the policy speaks, nothing changes."""
        import psycopg

        try:
            async with session.transaction(force_rollback=True):
                await self._alter_password(session, user, password)
        except psycopg.Error as exc:
            error = _statement_error(exc, "checking a password against the server's policy", "")
            if isinstance(error, PolicyRejected):
                return False
            return None
        return True

    async def verify(self, session: Any, target: DbTarget, user: str, *, clone_of: str | None) -> None:
        import psycopg

        try:
            row = await (await session.execute("SELECT current_user")).fetchone()
        except psycopg.Error as exc:
            raise _statement_error(exc, f"testing the login of {user}", "") from None
        if clone_of is not None and row is not None and row[0] != clone_of:
            raise TargetRefused(
                f"{user}'s sessions run as {row[0]}, not {clone_of}, so objects it creates would be owned "
                "by the "
                f"clone; run ALTER ROLE {user} SET role TO '{clone_of}'"
            )


class PostgresRotator(DatabaseRotator):
    """RotationType=postgresql."""

    rotation_type = "postgresql"

    def __init__(self) -> None:
        super().__init__()
        self.driver = PostgresDriver()
