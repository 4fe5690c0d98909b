"""Rotation policy from a secret's tags, and the decision for its current version.

The tag contract of Azure's rotation samples is accepted unchanged (ValidityPeriodDays opts in;
CredentialId and ProviderAddress are carried over). Every decision is made from listed properties
(tags, expiry, created) — a value is never read to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ..scope import name_in_scope
from ..settings import Settings
from ..vault.versions import (  # the version model and its bookkeeping tags live in the vault layer
    BOOKKEEPING_TAGS,
    VersionInfo,
    tag,
)

# The Azure samples' contract.
TAG_VALIDITY = "ValidityPeriodDays"
TAG_CREDENTIAL_ID = "CredentialId"
TAG_PROVIDER_ADDRESS = "ProviderAddress"
# This app's policy tags (set by the secret's owner).
TAG_TYPE = "RotationType"
TAG_THRESHOLD = "RotationThresholdDays"
TAG_OVERLAP = "RotationOverlapDays"
TAG_LENGTH = "RotationLength"
TAG_ALPHABET = "RotationAlphabet"
TAG_DELETE_EXPIRED = "CleanupDeleteExpired"

DEFAULT_ROTATION_TYPE = "random"
DEFAULT_VALIDITY_DAYS = 60.0  # the Azure SQL sample's default
DEFAULT_THRESHOLD_DAYS = 30.0  # when SecretNearExpiry fires
DEFAULT_OVERLAP_DAYS = 2.0  # longer than App Service's 24 h Key Vault reference cache
MAX_DAYS = 3650.0


class PolicyError(ValueError):
    """A rotation tag has a value the app cannot use; the message names the tag and the fix."""


def _days(tags: Mapping[str, str], name: str, default: float | None, *, minimum: float) -> float | None:
    raw = tag(tags, name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise PolicyError(f"tag {name}={raw!r} is not a number of days; set e.g. {name}=30") from None
    if not minimum <= value <= MAX_DAYS:
        raise PolicyError(f"tag {name}={raw!r} must be between {minimum:g} and {MAX_DAYS:g} days")
    return value


@dataclass(frozen=True)
class RotationPolicy:
    """What the tags ask for: which rotator, how long a version lives, when to rotate, how long to overlap."""

    rotation_type: str = DEFAULT_ROTATION_TYPE
    validity: timedelta = timedelta(days=DEFAULT_VALIDITY_DAYS)
    threshold: timedelta = timedelta(days=DEFAULT_THRESHOLD_DAYS)
    overlap: timedelta = timedelta(days=DEFAULT_OVERLAP_DAYS)
    length: int | None = None
    alphabet: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # all tags, for rotators of external targets

    @staticmethod
    def opted_in(tags: Mapping[str, str] | None) -> bool:
        return tag(tags, TAG_VALIDITY) is not None or tag(tags, TAG_TYPE) is not None

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> RotationPolicy | None:
        """None when the secret has no rotation tag; PolicyError when a tag is unusable."""
        if not cls.opted_in(tags):
            return None
        assert tags is not None
        validity = _days(tags, TAG_VALIDITY, DEFAULT_VALIDITY_DAYS, minimum=1 / 24)
        assert validity is not None
        explicit_threshold = _days(tags, TAG_THRESHOLD, None, minimum=0)
        if explicit_threshold is None:
            # A new version must not be due the moment it is written: cap the default at half the validity.
            threshold = min(DEFAULT_THRESHOLD_DAYS, validity / 2)
        elif explicit_threshold >= validity:
            raise PolicyError(
                f"tag {TAG_THRESHOLD}={explicit_threshold:g} must be less than {TAG_VALIDITY}={validity:g}, "
                "otherwise every new version is due at once"
            )
        else:
            threshold = explicit_threshold
        overlap = _days(tags, TAG_OVERLAP, DEFAULT_OVERLAP_DAYS, minimum=0)
        assert overlap is not None
        rotation_type = (tag(tags, TAG_TYPE) or DEFAULT_ROTATION_TYPE).strip().lower()
        length_raw = tag(tags, TAG_LENGTH)
        length: int | None = None
        if length_raw is not None and length_raw.strip():
            try:
                length = int(length_raw.strip())
            except ValueError:
                raise PolicyError(
                    f"tag {TAG_LENGTH}={length_raw!r} is not a whole number; set e.g. 32"
                ) from None
        alphabet = tag(tags, TAG_ALPHABET)
        return cls(
            rotation_type=rotation_type,
            validity=timedelta(days=validity),
            threshold=timedelta(days=threshold),
            overlap=timedelta(days=overlap),
            length=length,
            alphabet=alphabet.strip().lower() if alphabet and alphabet.strip() else None,
            options=dict(tags),
        )


class SecretStatus(StrEnum):
    UP_TO_DATE = "UpToDate"
    DUE = "Due"
    EXPIRED = "Expired"
    PENDING_RECOVERY = "PendingRecovery"
    DISABLED = "Disabled"
    ERROR = "Error"


@dataclass(frozen=True)
class Assessment:
    """The policy's verdict on a secret's current version, with the reason in words."""

    name: str
    status: SecretStatus
    reason: str
    policy: RotationPolicy | None = None
    expires_on: datetime | None = None
    due_on: datetime | None = None

    @property
    def needs_rotation(self) -> bool:
        return self.status in (SecretStatus.DUE, SecretStatus.EXPIRED)

    @property
    def needs_resume(self) -> bool:
        return self.status is SecretStatus.PENDING_RECOVERY


def is_managed(current: VersionInfo, settings: Settings) -> bool:
    """Rotation touches only secrets under the app's name prefix that carry a rotation tag."""
    return name_in_scope(current.name, settings) and RotationPolicy.opted_in(current.tags)


def effective_expiry(current: VersionInfo, policy: RotationPolicy) -> datetime | None:
    """The version's expiry; without one, created + validity (a secret tagged but never rotated)."""
    if current.expires_on is not None:
        return current.expires_on
    if current.created is not None:
        return current.created + policy.validity
    return None


def assess(current: VersionInfo, now: datetime, settings: Settings) -> Assessment | None:
    """None for a secret rotation must not touch; otherwise its status and why."""
    if not is_managed(current, settings):
        return None
    name = current.name
    if current.is_pending and not current.enabled:
        return Assessment(
            name,
            SecretStatus.PENDING_RECOVERY,
            f"a rotation (operation {current.operation_id or 'unknown'}) stored a pending version "
            "and did not finish; the next run resumes it",
        )
    try:
        policy = RotationPolicy.from_tags(current.tags)
    except PolicyError as exc:
        return Assessment(name, SecretStatus.ERROR, str(exc))
    assert policy is not None
    if not current.enabled:
        return Assessment(
            name,
            SecretStatus.DISABLED,
            "the current version is disabled; rotation leaves it alone (rotate on demand to replace it)",
            policy,
        )
    expiry = effective_expiry(current, policy)
    if expiry is None:
        return Assessment(name, SecretStatus.DUE, "no expiry and no creation time; rotating sets one", policy)
    due_on = expiry - policy.threshold
    if expiry <= now:
        return Assessment(
            name, SecretStatus.EXPIRED, f"expired {format_age(now - expiry)} ago", policy, expiry, due_on
        )
    if due_on <= now:
        return Assessment(
            name,
            SecretStatus.DUE,
            f"expires in {format_age(expiry - now)}, within the {format_age(policy.threshold)} threshold",
            policy,
            expiry,
            due_on,
        )
    return Assessment(
        name,
        SecretStatus.UP_TO_DATE,
        f"expires in {format_age(expiry - now)}; due in {format_age(due_on - now)}",
        policy,
        expiry,
        due_on,
    )


def format_age(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} seconds"


def carried_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """The tags a new version inherits: everything except the app's bookkeeping of the old version."""
    drop = {t.lower() for t in BOOKKEEPING_TAGS}
    return {k: v for k, v in (tags or {}).items() if k.strip().lower() not in drop}
