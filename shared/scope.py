"""What this app may change: names under its prefix, and secrets carrying its ownership tag.

The HTTP API refuses anything else before a vault write; destructive cleanup additionally requires
ownership. Adopting an existing, unowned secret needs the explicit SECRETS_ALLOW_ADOPT setting.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import OutOfScope
from .settings import Settings


def name_in_scope(name: str, settings: Settings) -> bool:
    return name.lower().startswith(settings.name_prefix.lower())


def require_name_in_scope(name: str, settings: Settings) -> None:
    if not name_in_scope(name, settings):
        raise OutOfScope(
            f"Secret '{name}' is outside this app's scope: names must start with '{settings.name_prefix}' "
            "(setting SECRETS_NAME_PREFIX).",
            field="name",
        )


def is_owned(tags: Mapping[str, str] | None, settings: Settings) -> bool:
    return bool(tags) and tags.get(settings.owner_tag) == settings.owner_value  # type: ignore[union-attr]


def ownership_tags(settings: Settings) -> dict[str, str]:
    """The bookkeeping tag the app sets on everything it creates."""
    return {settings.owner_tag: settings.owner_value}


def require_owned_or_adoptable(name: str, tags: Mapping[str, str] | None, settings: Settings) -> None:
    """An existing secret may be changed only if the app owns it, or adoption is explicitly allowed."""
    if is_owned(tags, settings) or settings.allow_adopt:
        return
    raise OutOfScope(
        f"Secret '{name}' exists but is not owned by this app (tag {settings.owner_tag}={settings.owner_value} "
        "is missing). Tag it in the vault, or set SECRETS_ALLOW_ADOPT=true to let the app adopt it.",
        field="name",
    )


def require_owned(name: str, tags: Mapping[str, str] | None, settings: Settings) -> None:
    """Deleting needs ownership itself: SECRETS_ALLOW_ADOPT lets the app take a secret over, not destroy it."""
    if is_owned(tags, settings):
        return
    raise OutOfScope(
        f"Secret '{name}' is not owned by this app (tag {settings.owner_tag}={settings.owner_value} is missing), "
        "so the app will not delete it. Delete it in the vault, or adopt it first by writing it with "
        "SECRETS_ALLOW_ADOPT=true.",
        field="name",
    )
