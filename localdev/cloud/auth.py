"""Who is calling: verifies the managed-identity tokens the local vault's identity endpoint issues (same
signing key, same issuer), with the audience each service accepts, and issues app tokens for Entra's
client-credentials grant. Issuing and signing are the vault's (localdev.vault.auth); audiences live here."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt

from ..vault.auth import ISSUER, Identity, TokenAuthority
from .errors import CloudError
from .store import Application, Principal

ARM_AUDIENCES = (
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
)
GRAPH_AUDIENCES = (
    "https://graph.microsoft.com",
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000",
)


def load_authority(state_dir: Path) -> TokenAuthority:
    """The vault's token authority from a shared state dir: tokens from its identity endpoint verify here."""
    return TokenAuthority(
        [], TokenAuthority.load_or_create_key(Path(state_dir) / "keys" / "token-signing.pem")
    )


class CloudAuth:
    def __init__(self, authority: TokenAuthority) -> None:
        self.authority = authority

    def _claims(self, authorization: str) -> dict[str, object] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            claims: dict[str, object] = jwt.decode(
                token.strip(),
                self.authority.signing_key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "oid"]},
            )
        except jwt.PyJWTError:
            return {}
        return claims

    def arm(self, authorization: str) -> Principal:
        claims = self._claims(authorization)
        challenge = {
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
            'error="invalid_token", '
            "error_description=\"The authentication failed because of missing 'Authorization' header.\""
        }
        if claims is None:
            raise CloudError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                headers=challenge,
            )
        if not claims or claims.get("iss") != ISSUER:
            raise CloudError(
                401, "InvalidAuthenticationToken", "The access token is invalid.", headers=challenge
            )
        if claims["aud"] not in ARM_AUDIENCES:
            allowed = ",".join(f"'{a}'" for a in ARM_AUDIENCES)
            raise CloudError(
                401,
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. "
                f"It should exactly match with one of the allowed audiences {allowed}.",
                headers=challenge,
            )
        return Principal(str(claims["oid"]), str(claims.get("appid", "")))

    def graph(self, authorization: str) -> Principal:
        claims = self._claims(authorization)
        if claims is None:
            raise CloudError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if not claims or claims.get("iss") != ISSUER:
            raise CloudError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if claims["aud"] not in GRAPH_AUDIENCES:
            raise CloudError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        return Principal(str(claims["oid"]), str(claims.get("appid", "")))

    def app_token(self, app: Application, scope: str, lifetime: float = 3600.0) -> tuple[str, int]:
        """A token for the app itself (client-credentials grant); its service principal's id is derived."""
        audience = scope.strip().removesuffix("/.default") or "https://graph.microsoft.com"
        principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"localdev-cloud/sp/{app.app_id}"))
        identity = Identity(app.display_name, app.app_id, principal, "", ())
        return self.authority.issue(identity, audience, lifetime)
