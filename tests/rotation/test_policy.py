"""Pure decisions: tags → policy → status; version order; revocation and purge plans; event parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from shared.cleanup import CleanupOutcome, plan_expired_delete, plan_purge, plan_revocations
from shared.rotation.events import EXPIRED, NEAR_EXPIRY, EventError, parse_event
from shared.rotation.policy import PolicyError, RotationPolicy, SecretStatus, assess, carried_tags
from shared.settings import Settings
from shared.vault.versions import SecretHistory, VersionInfo, format_time

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(vault_url="https://vault.example")


def current(
    tags: dict[str, str],
    *,
    expires_in_days: float | None = 90,
    enabled: bool = True,
    name: str = "db-password",
    created_days_ago: float = 10,
    version: str = "v1",
) -> VersionInfo:
    return VersionInfo(
        name=name,
        version=version,
        enabled=enabled,
        created=NOW - timedelta(days=created_days_ago),
        expires_on=NOW + timedelta(days=expires_in_days) if expires_in_days is not None else None,
        tags=tags,
    )


def test_no_rotation_tag_is_never_managed() -> None:
    assert (
        assess(current({"CredentialId": "sqlAdmin", "Owner": "team"}, expires_in_days=-5), NOW, SETTINGS)
        is None
    )


def test_validity_period_days_alone_opts_in_with_azure_sample_defaults() -> None:
    verdict = assess(current({"ValidityPeriodDays": "60"}, expires_in_days=40), NOW, SETTINGS)
    assert verdict is not None and verdict.status is SecretStatus.UP_TO_DATE
    assert verdict.policy is not None and verdict.policy.validity == timedelta(days=60)
    assert verdict.policy.threshold == timedelta(days=30) and verdict.policy.rotation_type == "random"
    assert verdict.due_on == NOW + timedelta(days=10)


@pytest.mark.parametrize(
    "days_left,status",
    [
        (31, SecretStatus.UP_TO_DATE),
        (30, SecretStatus.DUE),
        (1, SecretStatus.DUE),
        (-1, SecretStatus.EXPIRED),
    ],
)
def test_threshold_default_is_thirty_days(days_left: float, status: SecretStatus) -> None:
    verdict = assess(current({"ValidityPeriodDays": "90"}, expires_in_days=days_left), NOW, SETTINGS)
    assert verdict is not None and verdict.status is status, verdict.reason


def test_explicit_threshold_and_overlap_tags() -> None:
    tags = {"ValidityPeriodDays": "30", "RotationThresholdDays": "7", "RotationOverlapDays": "0.5"}
    policy = RotationPolicy.from_tags(tags)
    assert (
        policy is not None and policy.threshold == timedelta(days=7) and policy.overlap == timedelta(hours=12)
    )
    assert assess(current(tags, expires_in_days=8), NOW, SETTINGS).status is SecretStatus.UP_TO_DATE  # type: ignore[union-attr]
    assert assess(current(tags, expires_in_days=6), NOW, SETTINGS).status is SecretStatus.DUE  # type: ignore[union-attr]


def test_default_threshold_never_makes_a_new_version_due_at_once() -> None:
    policy = RotationPolicy.from_tags({"ValidityPeriodDays": "10"})
    assert policy is not None and policy.threshold == timedelta(days=5)
    fresh = current({"ValidityPeriodDays": "10"}, expires_in_days=10, created_days_ago=0)
    assert assess(fresh, NOW, SETTINGS).status is SecretStatus.UP_TO_DATE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "tags,fragment",
    [
        ({"ValidityPeriodDays": "sixty"}, "ValidityPeriodDays"),
        ({"ValidityPeriodDays": "30", "RotationThresholdDays": "30"}, "must be less than"),
        ({"ValidityPeriodDays": "30", "RotationLength": "long"}, "RotationLength"),
    ],
)
def test_bad_tags_are_an_error_status_naming_the_tag(tags: dict[str, str], fragment: str) -> None:
    verdict = assess(current(tags), NOW, SETTINGS)
    assert verdict is not None and verdict.status is SecretStatus.ERROR and fragment in verdict.reason
    with pytest.raises(PolicyError):
        RotationPolicy.from_tags(tags)


def test_tag_names_forgive_case_and_spaces() -> None:
    policy = RotationPolicy.from_tags({" validityperioddays ": "45", "rotationtype": " Random "})
    assert policy is not None and policy.validity == timedelta(days=45) and policy.rotation_type == "random"


def test_disabled_and_pending_versions() -> None:
    disabled = assess(current({"ValidityPeriodDays": "60"}, enabled=False, expires_in_days=-1), NOW, SETTINGS)
    assert disabled is not None and disabled.status is SecretStatus.DISABLED and not disabled.needs_rotation
    pending = assess(
        current(
            {"ValidityPeriodDays": "60", "RotationState": "pending", "RotationOperationId": "op1"},
            enabled=False,
        ),
        NOW,
        SETTINGS,
    )
    assert pending is not None and pending.status is SecretStatus.PENDING_RECOVERY and "op1" in pending.reason


def test_no_expiry_uses_created_plus_validity() -> None:
    old = assess(
        current({"ValidityPeriodDays": "60"}, expires_in_days=None, created_days_ago=45), NOW, SETTINGS
    )
    young = assess(
        current({"ValidityPeriodDays": "60"}, expires_in_days=None, created_days_ago=5), NOW, SETTINGS
    )
    assert old.status is SecretStatus.DUE and young.status is SecretStatus.UP_TO_DATE  # type: ignore[union-attr]


def test_name_prefix_limits_what_rotation_touches() -> None:
    scoped = Settings(vault_url="https://vault.example", name_prefix="app-")
    assert assess(current({"ValidityPeriodDays": "60"}, name="other-x"), NOW, scoped) is None
    assert assess(current({"ValidityPeriodDays": "60"}, name="app-x"), NOW, scoped) is not None


def test_carried_tags_keep_the_sample_contract_and_drop_bookkeeping() -> None:
    tags = {
        "ValidityPeriodDays": "60",
        "CredentialId": "sqlAdmin",
        "ProviderAddress": "/subscriptions/x",
        "RotationState": "pending",
        "RotationOperationId": "op",
        "RotationPreviousVersion": "v0",
        "RotationRevokeAfter": "2026-01-01T00:00:00Z",
        "RotationRevoked": "2026-01-02T00:00:00Z",
    }
    assert carried_tags(tags) == {
        "ValidityPeriodDays": "60",
        "CredentialId": "sqlAdmin",
        "ProviderAddress": "/subscriptions/x",
    }


def version(
    v: str, created: datetime, *, enabled: bool = True, tags: dict[str, str] | None = None
) -> VersionInfo:
    return VersionInfo(name="s", version=v, enabled=enabled, created=created, tags=tags or {})


def test_same_second_versions_are_ordered_by_lineage() -> None:
    second = NOW
    older = version("zzz", second, tags={"ValidityPeriodDays": "60"})
    newer = version("aaa", second, tags={"RotationPreviousVersion": "zzz"})
    history = SecretHistory.from_versions("s", [newer, older])
    assert history.latest is newer and history.before("aaa") is older


def test_revocation_waits_for_the_overlap_and_keeps_the_newest() -> None:
    v1 = version("v1", NOW - timedelta(days=60))
    v2 = version(
        "v2",
        NOW - timedelta(days=30),
        tags={"RotationPreviousVersion": "v1", "RotationRevokeAfter": format_time(NOW - timedelta(days=28))},
    )
    v3 = version(
        "v3",
        NOW - timedelta(hours=1),
        tags={
            "ValidityPeriodDays": "60",
            "RotationPreviousVersion": "v2",
            "RotationRevokeAfter": format_time(NOW + timedelta(days=2)),
        },
    )
    history = SecretHistory.from_versions("s", [v3, v1, v2])
    assert [s.version for s in plan_revocations(history, NOW, keep=1)] == ["v1"]  # v2's overlap is not over
    assert plan_revocations(history, NOW, keep=3) == []
    later = NOW + timedelta(days=3)
    assert [s.version for s in plan_revocations(history, later, keep=1)] == ["v1", "v2"]
    assert [s.version for s in plan_revocations(history, later, keep=2)] == ["v1"]


def test_no_revocation_while_a_rotation_is_pending() -> None:
    v1 = version("v1", NOW - timedelta(days=90))
    v2 = version("v2", NOW - timedelta(days=60))
    pending = version("v3", NOW, enabled=False, tags={"RotationState": "pending"})
    assert plan_revocations(SecretHistory.from_versions("s", [v1, v2, pending]), NOW, keep=1) == []


def test_expired_delete_needs_opt_in_ownership_and_grace() -> None:
    owned = {"ManagedBy": "keyvault-secrets-functions", "CleanupDeleteExpired": "true"}
    expired_long_ago = current(owned, expires_in_days=-31)
    assert plan_expired_delete(expired_long_ago, NOW, SETTINGS) is not None
    assert plan_expired_delete(current(owned, expires_in_days=-29), NOW, SETTINGS) is None
    assert (
        plan_expired_delete(current({"CleanupDeleteExpired": "true"}, expires_in_days=-31), NOW, SETTINGS)
        is None
    )
    assert (
        plan_expired_delete(
            current({"ManagedBy": "keyvault-secrets-functions"}, expires_in_days=-31), NOW, SETTINGS
        )
        is None
    )


def deleted(name: str, days_ago: float, tags: dict[str, str] | None) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, deleted_date=NOW - timedelta(days=days_ago), properties=SimpleNamespace(tags=tags)
    )


def test_purge_needs_ownership_grace_and_the_setting() -> None:
    owned = {"ManagedBy": "keyvault-secrets-functions"}
    step = plan_purge(deleted("a", 8, owned), NOW, SETTINGS)
    assert (
        step is not None
        and step.outcome is CleanupOutcome.PURGE_NOT_ALLOWED
        and "CLEANUP_ALLOW_PURGE" in step.reason
    )
    allowed = Settings(vault_url="https://vault.example", cleanup_allow_purge=True)
    assert plan_purge(deleted("a", 8, owned), NOW, allowed).outcome is CleanupOutcome.WOULD_DO  # type: ignore[union-attr]
    assert plan_purge(deleted("a", 6, owned), NOW, allowed) is None
    assert plan_purge(deleted("a", 8, {"ManagedBy": "someone-else"}), NOW, allowed) is None


SAMPLE = {
    "Id": "https://sample-kv.vault.azure.net/secrets/newsecret/ee059b2bb5bc48398a53b168c6cdcb10",
    "VaultName": "sample-kv",
    "ObjectType": "Secret",
    "ObjectName ": "newsecret",
    "Version": " ee059b2bb5bc48398a53b168c6cdcb10",
    "NBF": "1559081980",
    "EXP": "1559082102",
}


def test_event_parsing_follows_the_documented_example_with_its_typos() -> None:
    event = parse_event(NEAR_EXPIRY, SAMPLE, subject="newsecret", event_id="e1")
    assert (event.name, event.version) == ("newsecret", "ee059b2bb5bc48398a53b168c6cdcb10")
    assert event.expires_on == datetime.fromtimestamp(1559082102, UTC) and event.is_secret


def test_event_parsing_accepts_camel_case_numbers_and_id_only() -> None:
    camel = parse_event(
        EXPIRED, {"id": SAMPLE["Id"], "objectType": "Secret", "nbf": 1559081980, "exp": 1559082102.0}
    )
    assert (camel.name, camel.version) == ("newsecret", "ee059b2bb5bc48398a53b168c6cdcb10")
    assert camel.not_before == datetime.fromtimestamp(1559081980, UTC)
    with pytest.raises(EventError, match="EXP"):
        parse_event(NEAR_EXPIRY, {"ObjectName": "x", "Version": "v", "EXP": "soon"})
    with pytest.raises(EventError, match="names no secret"):
        parse_event(NEAR_EXPIRY, {"VaultName": "kv"})


def test_a_second_promoted_version_over_one_predecessor_is_found() -> None:
    base = VersionInfo("s", "v1", created=NOW - timedelta(days=3))
    tags = {"RotationPreviousVersion": "v1", "RotationOperationId": "op"}
    first = VersionInfo("s", "v2", created=NOW - timedelta(days=2), tags=tags)
    second = VersionInfo(
        "s", "v3", created=NOW - timedelta(days=1), tags={**tags, "RotationOperationId": "op2"}
    )
    pending = VersionInfo("s", "v4", enabled=False, created=NOW, tags={**tags, "RotationState": "pending"})
    assert SecretHistory.from_versions("s", [base, first]).promoted_twice() == []
    assert SecretHistory.from_versions("s", [base, first, second, pending]).promoted_twice() == [first]
