"""Property-based: whatever a caller sends to any endpoint, the answer is never a 5xx, and a rejected
request never writes to the vault (400/413/415 make no vault call at all); checked with the emulator's
stats."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fixtures.app import InProcessApi, SecretValues

pytestmark = pytest.mark.usefixtures("app_env")

WRITES = (
    "SetSecret",
    "UpdateSecret",
    "DeleteSecret",
    "RecoverDeletedSecret",
    "PurgeDeletedSecret",
    "RestoreSecret",
)
PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.one_of(
    st.from_regex(r"app-[0-9a-zA-Z-]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9a-zA-Z-]{1,8}", fullmatch=True),
    st.text(max_size=140),
    st.just("app-" + "x" * 124),
)
times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.text(max_size=30),
    st.integers(),
)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# A marked value (uuid prefix) is registered with the leak guard; others are junk that is rejected anyway.
marked_values = st.builds(lambda u, tail: f"hv-{u}-{tail}", st.uuids().map(str), st.text(max_size=40))
bodies = st.fixed_dictionaries(
    {},
    optional={
        "value": st.one_of(marked_values, st.integers(), st.just(""), st.just("é" * 12_801)),
        "generate": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "length": st.one_of(st.integers(min_value=0, max_value=2000), st.text(max_size=3)),
                    "alphabet": st.one_of(
                        st.sampled_from(["alphanumeric", "unreserved", "hex", "base32"]), st.text(max_size=8)
                    ),
                },
            ),
            any_json,
        ),
        "contentType": st.one_of(st.text(max_size=260), st.integers()),
        "tags": st.one_of(
            st.dictionaries(st.text(max_size=260), st.text(max_size=260) | st.integers(), max_size=17),
            any_json,
        ),
        "notBefore": times,
        "expiresOn": times,
        "enabled": st.one_of(st.booleans(), st.text(max_size=5)),
        "recover": st.one_of(st.booleans(), st.integers()),
        "extra": any_json,
    },
)
valid_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
valid_bodies = st.fixed_dictionaries(
    {"value": marked_values},
    optional={
        "contentType": st.text(max_size=255),
        "enabled": st.booleans(),
        "notBefore": valid_times,
        "expiresOn": valid_times,
        "recover": st.booleans(),
        "tags": st.dictionaries(st.text(min_size=1, max_size=256), st.text(max_size=256), max_size=14),
    },
) | st.fixed_dictionaries(
    {
        "generate": st.fixed_dictionaries(
            {},
            optional={
                "length": st.integers(16, 1024),
                "alphabet": st.sampled_from(["alphanumeric", "unreserved", "hex", "base32"]),
            },
        )
    }
)
content_types = st.just("application/json") | st.sampled_from(
    ["application/json; charset=utf-8", "text/plain", ""]
)
flags = st.one_of(st.none(), st.sampled_from(["true", "false", "1", "0"]), st.text(max_size=6))


def stats_of(vault_control) -> tuple[int, int]:
    stats = vault_control.stats()
    return stats["total"], sum(stats["operations"].get(op, 0) for op in WRITES)


def check(response, before: tuple[int, int], after: tuple[int, int]) -> None:
    assert response.status < 500, response.text
    if response.status in (400, 413, 415):
        assert after == before, f"{response.status} {response.error} still called the vault"
    if response.status >= 400:
        assert after[1] == before[1], f"rejected ({response.status}) but the vault was written"
        assert response.error["code"] and response.error["message"]


def register_marked(values: SecretValues, body: Any) -> None:
    if isinstance(body, dict) and isinstance(body.get("value"), str) and body["value"].startswith("hv-"):
        values.register(body["value"])


@PROPERTY_SETTINGS
@given(
    name=st.from_regex(r"app-[0-9a-z]{1,3}", fullmatch=True) | names,
    body=valid_bodies | bodies,
    content_type=content_types,
    recover=flags,
    raw=st.none() | st.none() | st.binary(max_size=40),
)
async def test_put_never_5xx_and_rejections_never_write(
    api: InProcessApi, secret_values: SecretValues, vault_control, name, body, content_type, recover, raw
) -> None:
    register_marked(secret_values, body)
    payload = raw if raw is not None else json.dumps(body).encode()
    before = stats_of(vault_control)
    response = await api.put(
        name,
        payload,
        params={"recover": recover} if recover is not None else None,
        headers={"content-type": content_type},
    )
    event(f"PUT {response.status}")
    check(response, before, stats_of(vault_control))
    if response.status in (200, 201):
        assert "value" not in response.json


@PROPERTY_SETTINGS
@given(name=names, versions=flags, method=st.sampled_from(["get", "delete", "recover"]))
async def test_get_delete_recover_never_5xx(
    api: InProcessApi, secret_values: SecretValues, vault_control, name, versions, method
) -> None:
    if name.startswith("app-") and len(name) < 20:  # give some names a live secret to act on
        await api.put(name, {"value": secret_values.new()}) if name[-1] in string.ascii_lowercase else None
    before = stats_of(vault_control)
    if method == "get":
        response = await api.get(name, params={"versions": versions} if versions is not None else None)
    elif method == "delete":
        response = await api.delete(name)
    else:
        response = await api.recover(name)
    check(response, before, stats_of(vault_control))


@PROPERTY_SETTINGS
@given(
    maxresults=st.one_of(st.none(), st.integers(-5, 40).map(str), st.text(max_size=4)),
    token=st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=30).map(lambda b: b.hex())),
    ready=flags,
)
async def test_list_and_health_never_5xx(api: InProcessApi, vault_control, maxresults, token, ready) -> None:
    params = {k: v for k, v in (("maxresults", maxresults), ("continuationToken", token)) if v is not None}
    before = stats_of(vault_control)
    check(await api.list(params), before, stats_of(vault_control))
    health = await api.health({"ready": ready} if ready is not None else None)
    assert health.status in (200, 400)
