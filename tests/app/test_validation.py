"""The vault's limits, enforced before anything is sent (pure: no vault needed)."""

from __future__ import annotations

import json

import pytest

from shared.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from shared.validation import (
    MAX_VALUE_BYTES,
    ListQuery,
    parse_flag,
    parse_list_query,
    parse_secret_write,
    require_json,
    validate_name,
)

OWNER = {"ManagedBy": "keyvault-secrets-functions"}


def write(body: dict, name: str = "app-db"):
    return parse_secret_write(name, body, bookkeeping_tags=OWNER)


def rejected(body: dict, name: str = "app-db") -> InvalidRequest:
    with pytest.raises((InvalidRequest, PayloadTooLarge)) as caught:
        write(body, name)
    return caught.value


@pytest.mark.parametrize("name", ["a", "A-1", "x" * 127, "0-0"])
def test_names_the_vault_accepts(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 128, "my_secret", "a.b", "é", "a b", "a/b", "１"])
def test_names_the_vault_rejects_are_400_on_name(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_name(name)
    assert caught.value.field == "name" and caught.value.status == 400


def test_value_limit_is_25600_utf8_bytes_not_characters() -> None:
    assert write({"value": "a" * MAX_VALUE_BYTES}).value is not None
    too_big = rejected({"value": "é" * (MAX_VALUE_BYTES // 2 + 1)})  # 2 bytes each: 25,602 bytes
    assert too_big.status == 413 and too_big.field == "value"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "value"),
        ({"value": "x", "generate": {}}, "value"),
        ({"value": ""}, "value"),
        ({"value": 5}, "value"),
        ({"value": "\ud800"}, "value"),
        ({"value": "x", "colour": "red"}, "colour"),
        ({"generate": {"length": 15}}, "generate.length"),
        ({"generate": {"length": 1025}}, "generate.length"),
        ({"generate": {"length": True}}, "generate.length"),
        ({"generate": {"length": 32.0}}, "generate.length"),
        ({"generate": {"alphabet": "emoji"}}, "generate.alphabet"),
        ({"generate": {"alphabet": ["hex"]}}, "generate.alphabet"),  # unhashable: was a TypeError (500)
        ({"generate": {"alphabet": {"hex": 1}}}, "generate.alphabet"),
        ({"generate": {"size": 3}}, "generate.size"),
        ({"generate": "long"}, "generate"),
        ({"value": "x", "contentType": "t" * 256}, "contentType"),
        ({"value": "x", "contentType": 3}, "contentType"),
        ({"value": "x", "enabled": "yes"}, "enabled"),
        ({"value": "x", "recover": 1}, "recover"),
        ({"value": "x", "tags": ["a"]}, "tags"),
        ({"value": "x", "tags": {"a": 1}}, "tags.a"),
        ({"value": "x", "tags": {"a": "v" * 257}}, "tags.a"),
        ({"value": "x", "tags": {"k" * 257: "v"}}, "tags"),
        ({"value": "x", "tags": {"": "v"}}, "tags"),
        ({"value": "x", "tags": {f"t{i}": "v" for i in range(15)}}, "tags"),  # 15 + ownership tag = 16
        ({"value": "x", "tags": {"ManagedBy": "someone-else"}}, "tags.ManagedBy"),
        ({"value": "x", "notBefore": "2030-01-01"}, "notBefore"),
        ({"value": "x", "notBefore": "2030-01-01T00:00:00"}, "notBefore"),
        ({"value": "x", "expiresOn": "tomorrow"}, "expiresOn"),
        ({"value": "x", "expiresOn": 1893456000}, "expiresOn"),
        ({"value": "x", "expiresOn": "2030-02-30T00:00:00Z"}, "expiresOn"),
        ({"value": "x", "expiresOn": "1969-12-31T23:59:59Z"}, "expiresOn"),
        ({"value": "x", "expiresOn": "9999-12-31T23:59:59-01:00"}, "expiresOn"),
        (
            {"value": "x", "notBefore": "2030-01-02T00:00:00Z", "expiresOn": "2030-01-01T00:00:00Z"},
            "notBefore",
        ),
        (
            {"value": "x", "notBefore": "2030-01-01T00:00:00Z", "expiresOn": "2030-01-01T00:00:00.5Z"},
            "notBefore",
        ),
    ],
)
def test_each_limit_names_its_field(body: dict, field: str) -> None:
    error = rejected(body)
    assert error.field == field, error.message
    assert error.status in (400, 413)


def test_errors_never_quote_the_value() -> None:
    marker = "s3cr3t-marker-in-value"
    for body in ({"value": marker, "bogus": 1}, {"value": marker * 2000}, {"value": marker, "generate": {}}):
        error = rejected(body)
        assert marker not in error.message and marker not in str(error.body())


def test_a_full_valid_write() -> None:
    request = write(
        {
            "value": "v",
            "contentType": "text/plain",
            "tags": {"env": "dev", "ManagedBy": OWNER["ManagedBy"]},
            "notBefore": "2030-01-01T01:00:00+01:00",
            "expiresOn": "2031-01-01T00:00:00.123456789Z",
            "enabled": False,
            "recover": True,
        }
    )
    assert request.tags == {"env": "dev", "ManagedBy": OWNER["ManagedBy"]}
    assert request.not_before.isoformat() == "2030-01-01T00:00:00+00:00"
    assert request.expires_on.year == 2031 and request.enabled is False and request.recover is True


def test_fourteen_user_tags_plus_ownership_fit() -> None:
    assert len(write({"value": "x", "tags": {f"t{i}": "v" for i in range(14)}}).tags) == 14


def test_the_value_is_not_in_the_request_repr() -> None:
    assert "hidden-value" not in repr(write({"value": "hidden-value"}))


def test_generate_defaults() -> None:
    request = write({"generate": {}})
    assert (
        request.value is None
        and request.generate.length == 32
        and request.generate.alphabet == "alphanumeric"
    )


def test_recover_query_flag_is_honoured() -> None:
    assert parse_secret_write("a", {"value": "x"}, bookkeeping_tags=OWNER, recover_param=True).recover


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/jsonx", "application/x-www-form-urlencoded"]
)
def test_body_must_be_sent_as_json(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        require_json(content_type, b"{}")
    assert caught.value.status == 415 and caught.value.field == "Content-Type"


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'"x"', b"\xff\xfe", b"null"])
def test_body_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        require_json("application/json; charset=utf-8", body)
    assert caught.value.field == "body"


def test_oversized_body_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        require_json("application/json", b"{" + b" " * 300_000 + b"}")


def test_flags_and_list_query() -> None:
    assert parse_flag({"versions": "true"}, "versions") and not parse_flag({}, "versions")
    assert not parse_flag({"versions": "0"}, "versions")
    with pytest.raises(InvalidRequest):
        parse_flag({"versions": "maybe"}, "versions")
    assert parse_list_query({}) == ListQuery(25, None)
    assert parse_list_query({"maxresults": "3", "continuationToken": "abc"}) == ListQuery(3, "abc")
    for bad in ("0", "26", "-1", "x", "²", "1.5"):
        with pytest.raises(InvalidRequest) as caught:
            parse_list_query({"maxresults": bad})
        assert caught.value.field == "maxresults"


def test_json_body_round_trip_of_limits() -> None:
    body = require_json("application/json", json.dumps({"value": "a" * 100}).encode())
    assert write(body).value == "a" * 100
