"""Who is calling and what they may do: the bearer challenge, token issuing/verification, and RBAC roles.

Tokens are RS256 JWTs signed with a key kept in the state directory, so they stay valid across restarts.
Token lifetimes follow real time (not the emulator clock): advancing the clock to pass a purge date must
not log every client out.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..statedir import write_private
from . import errors

TENANT_ID = "7b3e9f2a-4c1d-4e8b-9a6f-2d5c8e1b0a47"  # a GUID, so the SDK's challenge parser gets a real tenant
VAULT_RESOURCE = "https://vault.azure.net"
VAULT_APP_ID = (
    "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"  # the Key Vault service principal, accepted as an audience
)
ACCEPTED_AUDIENCES = frozenset({VAULT_RESOURCE, VAULT_RESOURCE + "/", VAULT_APP_ID})
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{VAULT_RESOURCE}"'
)
MISSING_TOKEN = "AKV10000: Request is missing a Bearer or PoP token."
SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000c0de"
RESOURCE_GROUP = "localdev"

SECRETS = "Microsoft.KeyVault/vaults/secrets"
READ_METADATA = f"{SECRETS}/readMetadata/action"
# Data action each REST operation needs (Azure RBAC "Microsoft.KeyVault" data actions).
OPERATION_ACTIONS: dict[str, str] = {
    "SetSecret": f"{SECRETS}/setSecret/action",
    "GetSecret": f"{SECRETS}/getSecret/action",
    "GetSecrets": READ_METADATA,
    "GetSecretVersions": READ_METADATA,
    "UpdateSecret": f"{SECRETS}/update/action",
    "DeleteSecret": f"{SECRETS}/delete",
    "GetDeletedSecret": READ_METADATA,
    "GetDeletedSecrets": READ_METADATA,
    "PurgeDeletedSecret": f"{SECRETS}/purge/action",
    "RecoverDeletedSecret": f"{SECRETS}/recover/action",
    "BackupSecret": f"{SECRETS}/backup/action",
    "RestoreSecret": f"{SECRETS}/restore/action",
}
# Built-in roles' documented data actions; "Purge" is the purge action alone, to grant it on its own.
ROLE_DATA_ACTIONS: dict[str, tuple[str, ...]] = {
    "Key Vault Administrator": ("Microsoft.KeyVault/vaults/*",),
    "Key Vault Secrets Officer": (f"{SECRETS}/*",),
    "Key Vault Secrets User": (f"{SECRETS}/getSecret/action", READ_METADATA),
    "Key Vault Reader": ("Microsoft.KeyVault/vaults/*/read", READ_METADATA),
    "Purge": (f"{SECRETS}/purge/action",),
}
_ROLE_ALIASES = {
    "administrator": "Key Vault Administrator",
    "admin": "Key Vault Administrator",
    "secrets-officer": "Key Vault Secrets Officer",
    "officer": "Key Vault Secrets Officer",
    "secrets-user": "Key Vault Secrets User",
    "user": "Key Vault Secrets User",
    "reader": "Key Vault Reader",
    "purge": "Purge",
}


def role_name(raw: str) -> str:
    """Accept a built-in role name in any case, or a short alias (officer, secrets-user, reader, purge...)."""
    cleaned = raw.strip().lower()
    for full in ROLE_DATA_ACTIONS:
        if full.lower() == cleaned:
            return full
    alias = cleaned.removeprefix("key vault ").replace(" ", "-")
    if alias in _ROLE_ALIASES:
        return _ROLE_ALIASES[alias]
    known = ", ".join(list(ROLE_DATA_ACTIONS) + sorted(_ROLE_ALIASES))
    raise ValueError(f"unknown role {raw!r}; use one of: {known}")


@dataclass(frozen=True)
class Identity:
    """A managed identity the endpoint can issue tokens for, with its role assignments on this vault."""

    name: str
    client_id: str
    object_id: str
    resource_id: str
    roles: tuple[str, ...]
    system_assigned: bool = False

    def may(self, action: str) -> bool:
        return _roles_allow(self.roles, action)

    def caller(self) -> str:
        return f"appid={self.client_id};oid={self.object_id};iss={ISSUER}"


@functools.lru_cache(maxsize=1024)
def _roles_allow(roles: tuple[str, ...], action: str) -> bool:
    """Whether any role's data actions match; memoized, as every request asks the same few questions."""
    action = action.lower()
    return any(
        fnmatch.fnmatchcase(action, pattern.lower()) for role in roles for pattern in ROLE_DATA_ACTIONS[role]
    )


def make_identity(
    name: str,
    roles: list[str],
    *,
    system_assigned: bool = False,
    client_id: str | None = None,
    object_id: str | None = None,
    resource_id: str | None = None,
) -> Identity:
    """Stable ids derived from the name, so tokens and configs agree across restarts."""
    client_id = client_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"localdev-vault/client/{name}"))
    object_id = object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"localdev-vault/object/{name}"))
    kind = "sites" if system_assigned else "userAssignedIdentities"
    resource_id = resource_id or (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/"
        + (
            "Microsoft.Web/sites/localdev-functions"
            if system_assigned
            else f"Microsoft.ManagedIdentity/{kind}/{name}"
        )
    )
    return Identity(
        name, client_id, object_id, resource_id, tuple(role_name(r) for r in roles), system_assigned
    )


def default_identities() -> list[Identity]:
    """One system-assigned identity holding Secrets Officer plus purge (the project's deployment)."""
    return [make_identity("system", ["Key Vault Secrets Officer", "Purge"], system_assigned=True)]


def load_identities(path: Path) -> list[Identity]:
    """Read `{"identities": [{"name", "roles", "system_assigned"?, "client_id"?, "object_id"?,
    "resource_id"?}]}`."""
    try:
        document = json.loads(path.read_text())
        return [
            make_identity(
                str(item["name"]),
                list(item.get("roles", [])),
                system_assigned=bool(item.get("system_assigned", False)),
                client_id=item.get("client_id"),
                object_id=item.get("object_id"),
                resource_id=item.get("resource_id"),
            )
            for item in document["identities"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"cannot read identities file {path}: {exc}. Expected "
            '{"identities": [{"name": "system", "system_assigned": true, "roles": ["officer", "purge"]}]}'
        ) from exc


@dataclass
class TokenAuthority:
    """Issues the identity endpoint's tokens; the vault checks them (signature, issuer, audience, expiry)."""

    identities: list[Identity]
    signing_key: rsa.RSAPrivateKey
    key_id: str = "localdev-vault-1"
    _verified: dict[str, tuple[Identity, float]] = field(default_factory=dict)

    @staticmethod
    def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        return key

    def find(
        self, *, client_id: str | None = None, object_id: str | None = None, resource_id: str | None = None
    ) -> Identity | None:
        """The identity selected by one of the ids, or the system-assigned one when none is given."""
        for identity in self.identities:
            if client_id and identity.client_id.lower() == client_id.lower():
                return identity
            if object_id and identity.object_id.lower() == object_id.lower():
                return identity
            if resource_id and identity.resource_id.lower() == resource_id.lower():
                return identity
        if client_id or object_id or resource_id:
            return None
        return next((i for i in self.identities if i.system_assigned), None)

    def by_name(self, name: str) -> Identity | None:
        return next((i for i in self.identities if i.name == name), None)

    def issue(self, identity: Identity, audience: str, lifetime: float) -> tuple[str, int]:
        now = int(time.time())
        expires_on = int(now + lifetime)
        claims = {
            "aud": audience,
            "iss": ISSUER,
            "iat": now,
            "nbf": now - 300 if lifetime > 0 else now - 600,
            "exp": expires_on,
            "appid": identity.client_id,
            "oid": identity.object_id,
            "sub": identity.object_id,
            "tid": TENANT_ID,
            "idtyp": "app",
            "xms_mirid": identity.resource_id,
        }
        token = jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.key_id})
        return token, expires_on

    def verify(self, authorization: str) -> Identity:
        """The identity behind an `Authorization: Bearer <jwt>` header, or the service's 401."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.Unauthorized(MISSING_TOKEN)
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            claims = jwt.decode(
                token,
                self.signing_key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "oid"]},
            )
        except jwt.ExpiredSignatureError:
            raise errors.Unauthorized("[TokenExpired] Error validating token: 'S2S12086'.") from None
        except jwt.InvalidSignatureError:
            raise errors.Unauthorized(
                "AKV10046: Unable to resolve the key used for signature validation."
            ) from None
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized(f"Error validating token: {type(exc).__name__}.") from None
        audience = claims["aud"]
        # a JWT may carry a list of audiences; Key Vault's tokens carry one string, and nothing else passes
        if not isinstance(audience, str) or audience not in ACCEPTED_AUDIENCES:
            found = (
                audience if isinstance(audience, str) else f"a {type(audience).__name__}, not one audience"
            )
            raise errors.Unauthorized(
                f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE} or {VAULT_APP_ID}, found: {found}."
            )
        if claims["iss"] != ISSUER:
            raise errors.Unauthorized(
                f"AKV10032: Invalid issuer. Expected one of {ISSUER}, found: {claims['iss']}."
            )
        if not isinstance(claims["oid"], str):
            raise errors.Unauthorized("Error validating token: the oid claim is not a string.")
        identity = next((i for i in self.identities if i.object_id == claims["oid"]), None)
        if identity is None:  # a token for an identity no longer configured: it holds no roles
            identity = Identity("unknown", str(claims.get("appid", "")), str(claims["oid"]), "", ())
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (identity, float(claims["exp"]))
        return identity

    def authorize(self, identity: Identity, operation: str, vault_name: str, secret: str | None) -> None:
        action = OPERATION_ACTIONS[operation]
        if not identity.may(action):
            resource = (
                f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/"
                f"microsoft.keyvault/vaults/{vault_name}" + (f"/secrets/{secret.lower()}" if secret else "")
            )
            raise errors.ForbiddenByRbac(identity.caller(), action, resource, vault_name)
