"""What the PostgreSQL and MySQL-family rotators share: the tag contract, passwords, value formats and the
one idempotent flow (probe the pending credential first, then change it with a credential that logs in).

A driver module (postgresql.py, mysql.py) supplies a `Driver`: log in, change a password (its own, or
another user's as the admin), make the clone, and check a value against the server's password policy
without changing anything. Everything here is driver-free, so importing it costs nothing at cold start.

Error classes (shared.errors): a login the server refuses for the credential is `AuthFailed` (internal: "this
credential does not log in"); network, timeout, too many connections → `TargetUnavailable` (never read as
"pending not applied"); TLS verification, a missing privilege, a bad database name → `TargetRefused` (the
message names the fix); the password policy refusing the value → `PolicyRejected` → regenerate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import CredentialRejected, TargetRefused, TargetUnavailable
from ..policy import (
    TAG_ALPHABET,
    TAG_CREDENTIAL_ID,
    TAG_LENGTH,
    TAG_PROVIDER_ADDRESS,
    PolicyError,
    RotationPolicy,
)
from . import PendingCredential, RotationContext

_log = logging.getLogger(__name__)

TAG_STRATEGY = "RotationStrategy"
TAG_DB_HOST = "DbHost"
TAG_DB_NAME = "DbName"
TAG_DB_TLS = "DbTls"
TAG_VALUE_FORMAT = "ValueFormat"
TAG_ADMIN_SECRET = "AdminSecret"
TAG_ALTERNATE_USER = "AlternateUser"
TAG_DB_USER_HOST = "DbUserHost"  # MySQL: the host part of the account ('%' by default)

SETTING_CA_BUNDLE = "DB_CA_BUNDLE"
CLONE_SUFFIX = "_clone"
STRATEGIES = ("single", "alternating")
TLS_MODES = ("verify-full", "disable")
FORMATS = ("password", "json")

# Passwords: letters, digits and RFC 3986 "unreserved" marks only. None of them needs quoting in a URL
# (user:pass@host), a libpq keyword string, an ADO.NET/JDBC connection string, .pgpass or a shell word,
# and together they give Azure's "three of four classes" (upper, lower, digit, non-alphanumeric).
PASSWORD_SPECIALS = "-._~"
PASSWORD_ALPHABETS = {
    "unreserved": (string.ascii_lowercase, string.ascii_uppercase, string.digits, PASSWORD_SPECIALS),
    "alphanumeric": (string.ascii_lowercase, string.ascii_uppercase, string.digits),
}
DEFAULT_PASSWORD_ALPHABET = "unreserved"
DEFAULT_PASSWORD_LENGTH = 32
MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 16, 128  # Azure Flexible Server: 8-128
REGENERATE_ATTEMPTS = 3
TEST_DELAYS = (0.25, 0.5, 1.0)  # the test step's propagation budget (replicas, pools): 4 logins, ~1.75 s


def tag(tags: Mapping[str, str] | None, name: str) -> str | None:
    """Tag lookup that forgives case and stray spaces in the tag name (tags are edited by hand)."""
    if not tags:
        return None
    if name in tags:
        return tags[name]
    wanted = name.lower()
    return next((v for k, v in tags.items() if k.strip().lower() == wanted), None)


class AuthFailed(Exception):
    """The server answered and refused this user/password (not a network or TLS problem)."""


class PolicyRejected(Exception):
    """The server's password policy refused the value; the server is unchanged."""


# ------------------------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class DbTarget:
    """The database side of a secret, from its tags."""

    kind: str  # "postgresql" | "mysql"
    host: str
    port: int
    dbname: str | None
    tls: str
    strategy: str
    value_format: str
    user: str  # CredentialId: the user in the version the tags were read from
    alternate: str | None
    admin_secret: str | None
    user_host: str

    @property
    def alternating(self) -> bool:
        return self.strategy == "alternating"

    @property
    def clone_mode(self) -> bool:
        return self.alternating and self.alternate is None

    def other_user(self, user: str) -> str:
        """The user an alternating rotation switches to from `user`."""
        if self.alternate is not None:
            return self.alternate if user != self.alternate else self.user
        return user[: -len(CLONE_SUFFIX)] if user.endswith(CLONE_SUFFIX) else user + CLONE_SUFFIX

    def pair(self) -> tuple[str, str]:
        """(base, clone) in clone mode; (CredentialId, AlternateUser) for a pre-provisioned pair."""
        if self.alternate is not None:
            return self.user, self.alternate
        base = self.user[: -len(CLONE_SUFFIX)] if self.user.endswith(CLONE_SUFFIX) else self.user
        return base, base + CLONE_SUFFIX

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "tls": self.tls,
            "strategy": self.strategy,
            "valueFormat": self.value_format,
        }


AZURE_SUFFIX = {
    "postgresql": ("microsoft.dbforpostgresql", "postgres.database.azure.com", 5432),
    "mysql": ("microsoft.dbformysql", "mysql.database.azure.com", 3306),
}


def _host_port(raw: str, default_port: int) -> tuple[str, int]:
    text = raw.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise PolicyError(f"tag {TAG_DB_HOST}={raw!r} is not a host name; set host or host:port")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise PolicyError(f"tag {TAG_DB_HOST}={raw!r} has an invalid port; set host:port, port 1-65535")
        return host.lower(), int(port_text)
    return host.lower(), default_port


def _from_provider_address(address: str, kind: str) -> str:
    namespace, suffix, _ = AZURE_SUFFIX[kind]
    parts = [p for p in address.strip().split("/") if p]
    lowered = [p.lower() for p in parts]
    try:
        index = lowered.index("providers")
        provider, name = lowered[index + 1], parts[index + 3]
    except (ValueError, IndexError):
        raise PolicyError(
            f"tag {TAG_PROVIDER_ADDRESS}={address!r} is not an ARM resource ID "
            "(/subscriptions/…/providers/Microsoft.DBforPostgreSQL/flexibleServers/<name>); "
            f"or set {TAG_DB_HOST}"
        ) from None
    if provider != namespace:
        raise PolicyError(
            f"tag {TAG_PROVIDER_ADDRESS} names a {parts[index + 1]} resource, not a {kind} server; "
            f"fix it or set {TAG_DB_HOST}"
        )
    return f"{name.lower()}.{suffix}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _choice(policy: RotationPolicy, name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = tag(policy.options, name)
    value = (raw or "").strip().lower() or default
    if value not in allowed:
        raise PolicyError(f"tag {name}={raw!r} must be one of: {', '.join(allowed)}")
    return value


def check_name(name: str, what: str, limit: int, *, unit: str = "bytes") -> None:
    """Refuse a user name the server would reject or silently truncate (PostgreSQL truncates at 63 bytes)."""
    if not name:
        raise PolicyError(f"{what} is empty; set it to the database user name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PolicyError(f"{what} contains a control character; database user names must not")
    size = len(name.encode()) if unit == "bytes" else len(name)
    if size > limit:
        raise PolicyError(f"{what}={name!r} is {size} {unit}; the server's limit is {limit}")


def parse_target(policy: RotationPolicy, kind: str, name_limit: int, unit: str) -> DbTarget:
    """The target from the tags, or PolicyError naming the tag (checked before anything is written)."""
    options = policy.options
    _, _, default_port = AZURE_SUFFIX[kind]
    strategy = _choice(policy, TAG_STRATEGY, STRATEGIES, "single")
    value_format = _choice(
        policy, TAG_VALUE_FORMAT, FORMATS, "json" if strategy == "alternating" else "password"
    )
    if strategy == "alternating" and value_format != "json":
        raise PolicyError(
            f"tag {TAG_VALUE_FORMAT}=password cannot work with {TAG_STRATEGY}=alternating (the user changes "
            f"with each rotation); set {TAG_VALUE_FORMAT}=json"
        )
    host_tag, address = tag(options, TAG_DB_HOST), tag(options, TAG_PROVIDER_ADDRESS)
    if host_tag and host_tag.strip():
        host, port = _host_port(host_tag, default_port)
    elif address and address.strip():
        host, port = _from_provider_address(address, kind), default_port
    else:
        raise PolicyError(
            f"a {kind} secret needs the server: set {TAG_PROVIDER_ADDRESS} to its ARM resource ID or "
            f"{TAG_DB_HOST} "
            "to host or host:port"
        )
    tls = _choice(policy, TAG_DB_TLS, TLS_MODES, "verify-full")
    if tls == "disable" and not is_loopback(host):
        raise PolicyError(
            f"tag {TAG_DB_TLS}=disable is accepted only for a loopback server (localhost, 127.0.0.1, ::1), "
            "not "
            f"{host!r}: passwords must not cross a network in clear text; remove the tag"
        )
    user = (tag(options, TAG_CREDENTIAL_ID) or "").strip()
    check_name(user, f"tag {TAG_CREDENTIAL_ID}", name_limit, unit=unit)
    alternate = (tag(options, TAG_ALTERNATE_USER) or "").strip() or None
    admin_secret = (tag(options, TAG_ADMIN_SECRET) or "").strip() or None
    if strategy == "alternating":
        if admin_secret is None:
            raise PolicyError(
                f"{TAG_STRATEGY}=alternating needs {TAG_ADMIN_SECRET}: the name of a secret holding "
                '{"username","password","host"} of the user that may set the other user\'s password'
            )
        if alternate is not None:
            check_name(alternate, f"tag {TAG_ALTERNATE_USER}", name_limit, unit=unit)
            if alternate == user:
                raise PolicyError(
                    f"tag {TAG_ALTERNATE_USER} must name a different user than {TAG_CREDENTIAL_ID}"
                )
        else:
            base = user[: -len(CLONE_SUFFIX)] if user.endswith(CLONE_SUFFIX) else user
            check_name(base + CLONE_SUFFIX, f"the clone user of {TAG_CREDENTIAL_ID}", name_limit, unit=unit)
    user_host = (tag(options, TAG_DB_USER_HOST) or "%").strip() or "%"
    if len(user_host) > 255 or any(ord(c) < 32 for c in user_host):
        raise PolicyError(f"tag {TAG_DB_USER_HOST}={user_host!r} is not an account host (e.g. % or 10.0.0.%)")
    dbname = (tag(options, TAG_DB_NAME) or "").strip() or ("postgres" if kind == "postgresql" else None)
    return DbTarget(
        kind, host, port, dbname, tls, strategy, value_format, user, alternate, admin_secret, user_host
    )


def ca_bundle(ctx: RotationContext) -> str | None:
    """DB_CA_BUNDLE (root CAs only, e.g. DigiCert Global Root G2 + Microsoft RSA Root CA 2017), else None
    for the system store."""
    path = ctx.settings.db_ca_bundle if ctx.settings is not None else os.environ.get(SETTING_CA_BUNDLE)
    if path and not os.path.isfile(path):
        raise TargetRefused(
            f"app setting {SETTING_CA_BUNDLE}={path!r} names no file; point it at a PEM file with the "
            "server's "
            "root CA certificates (or remove it to use the system store)"
        )
    return path


# ------------------------------------------------------------------------------------------- passwords


def password_spec(policy: RotationPolicy) -> tuple[int, str]:
    length = policy.length or DEFAULT_PASSWORD_LENGTH
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise PolicyError(
            f"tag {TAG_LENGTH}={length} must be from {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} for a "
            "database password"
        )
    alphabet = policy.alphabet or DEFAULT_PASSWORD_ALPHABET
    if alphabet not in PASSWORD_ALPHABETS:
        raise PolicyError(
            f"tag {TAG_ALPHABET}={alphabet!r} cannot make a database password with three character classes "
            f"(Azure's rule); use one of: {', '.join(PASSWORD_ALPHABETS)}"
        )
    return length, alphabet


def generate_password(length: int, alphabet: str, user: str) -> str:
    """At least two of each class, an alphanumeric first character (never read as an option or `~`), and no
    three consecutive characters of the user name (Azure's rule for admin passwords)."""
    classes = PASSWORD_ALPHABETS[alphabet]
    symbols = "".join(classes)
    lowered = user.lower()
    banned = {lowered[i : i + 3] for i in range(len(lowered) - 2)}
    while True:
        value = secrets.choice(string.ascii_letters + string.digits) + "".join(
            secrets.choice(symbols) for _ in range(length - 1)
        )
        if all(sum(c in cls for c in value) >= 2 for cls in classes) and not any(
            part in value.lower() for part in banned
        ):
            return value


# ------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class DbCredential:
    username: str
    password: str

    def __repr__(self) -> str:  # never the password
        return f"DbCredential(username={self.username!r})"


def read_credential(value: str, target: DbTarget, default_user: str, what: str) -> DbCredential:
    """A version's value as (user, password): JSON names its user, the password form is the password."""
    if target.value_format == "json":
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("password"), str):
            raise TargetRefused(
                f"the {what} value is not JSON with username and password ({TAG_VALUE_FORMAT}=json); write a "
                'version {"username": ..., "password": ...} or fix the tag'
            )
        username = data.get("username")
        return DbCredential(
            username if isinstance(username, str) and username else default_user, data["password"]
        )
    return DbCredential(default_user, value)


def write_value(target: DbTarget, credential: DbCredential) -> str:
    if target.value_format == "password":
        return credential.password
    data: dict[str, Any] = {
        "username": credential.username,
        "password": credential.password,
        "host": target.host,
        "port": target.port,
    }
    if target.dbname:
        data["dbname"] = target.dbname
    return json.dumps(data)


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- the flow


class Session(Protocol):
    async def close(self) -> None: ...


class Driver(Protocol):
    """One database family's statements. Every method raises AuthFailed, PolicyRejected, TargetUnavailable or
    TargetRefused; never anything carrying a password."""

    kind: str
    name_unit: str
    name_limit: int

    async def connect(self, target: DbTarget, ca: str | None, user: str, password: str) -> Any: ...

    async def close(self, session: Any) -> None: ...

    async def check_user_names(self, session: Any, names: list[str]) -> None: ...

    async def set_own_password(self, session: Any, target: DbTarget, user: str, password: str) -> None: ...

    async def set_password(
        self, session: Any, target: DbTarget, user: str, password: str, *, clone_of: str | None
    ) -> None: ...

    async def policy_accepts(
        self, session: Any, target: DbTarget, user: str, password: str
    ) -> bool | None: ...

    async def verify(self, session: Any, target: DbTarget, user: str, *, clone_of: str | None) -> None: ...


class _Prefetch:
    """The current value (and, alternating, the admin secret) read from the vault in the background."""

    def __init__(self, ctx: RotationContext, target: DbTarget) -> None:
        self.current: asyncio.Future[str] = asyncio.ensure_future(ctx.read_value(None))
        self.admin: asyncio.Future[str] | None = None
        self.admin_name = target.admin_secret
        if target.alternating and target.admin_secret and ctx.read_secret is not None:
            self.admin = asyncio.ensure_future(ctx.read_secret(target.admin_secret))

    def context(self, ctx: RotationContext) -> RotationContext:
        read_value, read_secret = ctx.read_value, ctx.read_secret

        async def value(version: str | None = None) -> str:
            return await self.current if version is None else await read_value(version)

        async def secret(name: str) -> str:
            if self.admin is not None and name == self.admin_name:
                return await self.admin
            assert read_secret is not None
            return await read_secret(name)

        return dataclasses.replace(ctx, read_value=value, read_secret=secret if read_secret else None)

    async def drop(self) -> None:
        tasks = [t for t in (self.current, self.admin) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # consumed: no "exception never retrieved"


class DatabaseRotator:
    """single: the user changes its own password (no admin needed). alternating: the admin secret's user sets
    the other user's password (a pre-provisioned pair, or `<user>_clone` made on first use)."""

    rotation_type = ""
    touches_target = True
    driver: Driver
    # Injected by tests: the password source, and the wait between test-step logins.
    draw: Callable[[int, str, str], str] = staticmethod(generate_password)
    sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)
    test_delays: tuple[float, ...] = TEST_DELAYS

    def __init__(self) -> None:
        # Drawn after a policy rejection, stored by the engine, not yet on the server: test applies them.
        self._deferred: set[tuple[str, str, str]] = set()

    # -------------------------------------------------------------- contract

    def target(self, policy: RotationPolicy) -> DbTarget:
        return parse_target(policy, self.driver.kind, self.driver.name_limit, self.driver.name_unit)

    def validate(self, policy: RotationPolicy) -> None:
        self.target(policy)
        password_spec(policy)

    async def create_pending(self, ctx: RotationContext) -> PendingCredential:
        target = self.target(ctx.policy)
        user = target.other_user(target.user) if target.alternating else target.user
        return self._pending(ctx, target, user, target.user)

    def _pending(
        self, ctx: RotationContext, target: DbTarget, user: str, previous_user: str
    ) -> PendingCredential:
        length, alphabet = password_spec(ctx.policy)
        credential = DbCredential(user, self.draw(length, alphabet, user))
        tags = {"CredentialId": user}
        if target.alternate is not None:
            tags[TAG_ALTERNATE_USER] = previous_user  # the pair's other user: the next rotation switches back
        return PendingCredential(write_value(target, credential), tags)

    async def apply(self, ctx: RotationContext, pending: PendingCredential) -> PendingCredential | None:
        target = self.target(ctx.policy)
        ca = ca_bundle(ctx)
        wanted = self._pending_credential(target, pending)
        # A value this process deferred before a crash is applied here now, not again by test.
        self._deferred.discard((ctx.name, ctx.operation_id, _fingerprint(pending.value)))
        # The vault reads the next steps need run while the probe logs in: they overlap, not add up.
        prefetch = _Prefetch(ctx, target)
        try:
            if await self._logs_in(target, ca, wanted):
                _log.info(
                    "%s: the pending password of %s already logs in; nothing to apply",
                    ctx.name,
                    wanted.username,
                )
                return None
            return await self._apply(prefetch.context(ctx), target, ca, wanted, pending)
        finally:
            await prefetch.drop()

    async def _apply(
        self,
        ctx: RotationContext,
        target: DbTarget,
        ca: str | None,
        wanted: DbCredential,
        pending: PendingCredential,
    ) -> PendingCredential | None:
        session, user_changes_itself, clone_of = await self._authority(ctx, target, ca, wanted)
        try:
            try:
                await self._set(session, target, wanted, user_changes_itself, clone_of)
                return None
            except PolicyRejected:
                _log.warning(
                    "%s: the server's password policy refused the drawn password; drawing another", ctx.name
                )
            length, alphabet = password_spec(ctx.policy)
            for _ in range(REGENERATE_ATTEMPTS):
                candidate = DbCredential(wanted.username, self.draw(length, alphabet, wanted.username))
                verdict = await self.driver.policy_accepts(
                    session, target, candidate.username, candidate.password
                )
                if verdict is False:
                    continue
                # Not applied yet: the engine stores it first (a crash cannot lose it), then test applies it.
                value = write_value(target, candidate)
                self._deferred.add((ctx.name, ctx.operation_id, _fingerprint(value)))
                tags = {k: v for k, v in pending.tags.items() if k in ("CredentialId", TAG_ALTERNATE_USER)}
                return PendingCredential(value, tags)
            raise CredentialRejected(
                f"the server's password policy refused {REGENERATE_ATTEMPTS + 1} generated passwords for "
                f"{wanted.username}; raise {TAG_LENGTH} or relax the policy (the server is unchanged)"
            )
        finally:
            await self.driver.close(session)

    async def test(self, ctx: RotationContext, pending: PendingCredential) -> None:
        target = self.target(ctx.policy)
        ca = ca_bundle(ctx)
        wanted = self._pending_credential(target, pending)
        key = (ctx.name, ctx.operation_id, _fingerprint(pending.value))
        deferred = key in self._deferred
        self._deferred.discard(key)
        if deferred and not await self._logs_in(target, ca, wanted):
            session, user_changes_itself, clone_of = await self._authority(ctx, target, ca, wanted)
            try:
                await self._set(session, target, wanted, user_changes_itself, clone_of)
            except PolicyRejected:
                raise CredentialRejected(
                    f"the server's password policy refused two generated passwords for {wanted.username}; "
                    f"raise {TAG_LENGTH} or relax the policy (the server is unchanged; the next run draws again)"
                ) from None
            finally:
                await self.driver.close(session)
        clone_of = self._clone_of(target, wanted.username)
        problem: Exception | None = None
        for delay in (*self.test_delays, None):
            try:
                session = await self.driver.connect(target, ca, wanted.username, wanted.password)
                try:
                    await self.driver.verify(session, target, wanted.username, clone_of=clone_of)
                finally:
                    await self.driver.close(session)
                return
            except (AuthFailed, TargetUnavailable) as exc:
                problem = exc
            if delay is not None:
                await self.sleep(delay)
        if isinstance(problem, TargetUnavailable):
            raise problem
        raise TargetUnavailable(
            f"the new password of {wanted.username} was set but does not log in yet (after "
            f"{len(self.test_delays) + 1} attempts); the next run re-applies and tests it again"
        )

    async def finish(self, ctx: RotationContext, pending: PendingCredential) -> None:
        # single: nothing to tidy. alternating: the previous user keeps its password through the overlap; the
        # next rotation replaces it.
        return None

    async def describe(self, ctx: RotationContext) -> dict[str, Any]:
        """For the plan and dry run: which user changes, whether server and admin secret work. No writes."""
        report: dict[str, Any] = {"rotationType": self.rotation_type, "writes": False}
        try:
            target = self.target(ctx.policy)
        except PolicyError as exc:
            report["problems"] = [str(exc)]
            return report
        report.update(target.describe())
        report["currentUser"] = target.user
        report["userToChange"] = target.other_user(target.user) if target.alternating else target.user
        problems: list[str] = []
        try:
            ca = ca_bundle(ctx)
            current = read_credential(await ctx.read_value(None), target, target.user, "current")
            report["currentLogsIn"] = await self._logs_in(target, ca, current)
            report["targetReachable"] = True
            if not report["currentLogsIn"]:
                problems.append(f"the current version does not log in as {current.username}")
            if target.alternating:
                report["adminSecret"] = target.admin_secret
                admin = await self._admin_credential(ctx, target)
                report["adminUser"] = admin.username
                report["adminLogsIn"] = await self._logs_in(target, ca, admin)
                if not report["adminLogsIn"]:
                    problems.append(
                        f"the admin secret {target.admin_secret} does not log in as {admin.username}"
                    )
        except TargetUnavailable as exc:
            report["targetReachable"] = False
            problems.append(exc.message)
        except (TargetRefused, CredentialRejected) as exc:
            problems.append(exc.message)
        report["problems"] = problems
        return report

    # -------------------------------------------------------------- steps

    def _pending_credential(self, target: DbTarget, pending: PendingCredential) -> DbCredential:
        user = pending.tags.get("CredentialId") or target.user
        credential = read_credential(pending.value, target, user, "pending")
        check_name(
            credential.username, "the pending user", self.driver.name_limit, unit=self.driver.name_unit
        )
        return credential

    def _clone_of(self, target: DbTarget, user: str) -> str | None:
        if target.clone_mode and user.endswith(CLONE_SUFFIX):
            return user[: -len(CLONE_SUFFIX)]
        return None

    async def _logs_in(self, target: DbTarget, ca: str | None, credential: DbCredential) -> bool:
        """True/False when the server answered; TargetUnavailable/TargetRefused propagate (never "no")."""
        try:
            session = await self.driver.connect(target, ca, credential.username, credential.password)
        except AuthFailed:
            return False
        await self.driver.close(session)
        return True

    async def _authority(
        self, ctx: RotationContext, target: DbTarget, ca: str | None, wanted: DbCredential
    ) -> tuple[Any, bool, str | None]:
        """A session that may set `wanted`'s password: (session, changes itself, clone base or None)."""
        if not target.alternating:
            if wanted.username != target.user:
                raise TargetRefused(
                    f"the pending user {wanted.username} is not {TAG_CREDENTIAL_ID}={target.user}; a "
                    "single-user "
                    "rotation never changes another user"
                )
            return await self._login_as_user(ctx, target, ca, wanted.username), True, None
        # Alternating: the current credential must still log in (AWS's guard: a secret that no longer
        # works never steers the admin), and both users must be the configured pair.
        current = await self._current_credential(ctx, target)
        base, other = target.pair()
        if {current.username, wanted.username} != {base, other}:
            raise TargetRefused(
                f"the current user {current.username} and the pending user {wanted.username} are not the "
                f"configured pair ({base}, {other}); fix {TAG_CREDENTIAL_ID}/{TAG_ALTERNATE_USER}"
            )
        if not await self._logs_in(target, ca, current):
            raise TargetRefused(
                f"the current version no longer logs in as {current.username}, so the rotator will not act "
                "for "
                "it; write a version with a working password, then rotate again"
            )
        admin = await self._admin_credential(ctx, target)
        try:
            session = await self.driver.connect(target, ca, admin.username, admin.password)
        except AuthFailed:
            raise TargetRefused(
                f"the admin secret {target.admin_secret} does not log in as {admin.username}; update that "
                "secret"
            ) from None
        try:
            await self.driver.check_user_names(session, [wanted.username, current.username])
        except BaseException:
            await self.driver.close(session)
            raise
        return session, False, self._clone_of(target, wanted.username)

    async def _set(
        self,
        session: Any,
        target: DbTarget,
        wanted: DbCredential,
        user_changes_itself: bool,
        clone_of: str | None,
    ) -> None:
        if user_changes_itself:
            await self.driver.set_own_password(session, target, wanted.username, wanted.password)
        else:
            await self.driver.set_password(
                session, target, wanted.username, wanted.password, clone_of=clone_of
            )

    async def _current_credential(self, ctx: RotationContext, target: DbTarget) -> DbCredential:
        return read_credential(await ctx.read_value(None), target, target.user, "current")

    async def _login_as_user(self, ctx: RotationContext, target: DbTarget, ca: str | None, user: str) -> Any:
        """Log in as `user` with the current version, else the one before it (a crash after the server changed
        but before the vault did); neither → TargetRefused."""
        tried: list[str] = []
        versions: list[str | None] = [None]
        previous = ctx.current.previous_version if ctx.current is not None else None
        if previous:
            versions.append(previous)
        for version in versions:
            label = "current" if version is None else f"previous ({version})"
            try:
                credential = read_credential(await ctx.read_value(version), target, user, label)
            except TargetRefused:
                tried.append(label + ": unreadable")
                continue
            except Exception as exc:
                if version is None:
                    raise
                tried.append(f"{label}: {type(exc).__name__}")
                continue
            try:
                session = await self.driver.connect(target, ca, user, credential.password)
            except AuthFailed:
                tried.append(label)
                continue
            await self.driver.check_user_names(session, [user])
            return session
        raise TargetRefused(
            f"no stored password logs in as {user} (tried {', '.join(tried)}); set the user's password to "
            "the "
            "current version's value on the server (or write a version with its password), then rotate again"
        )

    async def _admin_credential(self, ctx: RotationContext, target: DbTarget) -> DbCredential:
        if ctx.read_secret is None or target.admin_secret is None:
            raise TargetRefused(
                f"{TAG_ADMIN_SECRET} cannot be read here; set the tag and rotate through the engine"
            )
        raw = await ctx.read_secret(target.admin_secret)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("username", "password")
        ):
            raise TargetRefused(
                f"the admin secret {target.admin_secret} must be JSON with username, password and host; "
                "rewrite it"
            )
        host = data.get("host")
        if not isinstance(host, str) or not host.strip():
            raise TargetRefused(
                f'the admin secret {target.admin_secret} names no host; add "host": "{target.host}" so it '
                "cannot be used against another server"
            )
        admin_host, admin_port = _host_port(host, target.port)
        port = data.get("port")
        if isinstance(port, (int, str)) and str(port).isdigit():
            admin_port = int(port)
        if (admin_host, admin_port) != (target.host, target.port):
            raise TargetRefused(
                f"the admin secret {target.admin_secret} is for {admin_host}:{admin_port}, not the target "
                f"{target.host}:{target.port}; use the admin secret of this server"
            )
        return DbCredential(data["username"], data["password"])
