"""The vault's limits in one place, and the typed requests that pass them.

A request that breaks a limit is refused here with an error naming the field, so nothing is ever
sent to the vault for it. Limits are Key Vault's documented ones (keyvault-protocol.md §1.5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import generator
from .errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_VALUE_BYTES = 25_600
MAX_TAGS = 15
MAX_TAG_NAME = 256
MAX_TAG_VALUE = 256
MAX_CONTENT_TYPE = 255
MAX_RESULTS = 25
MAX_BODY_BYTES = 256 * 1024  # a 25,600-byte value JSON-escaped (\u0001 is 6 bytes) + 15 tags fits
MAX_CONTINUATION_TOKEN = 4096
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_10000 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_MAX_RESULTS_PARAM = re.compile(r"^[0-9]{1,3}$")

WRITE_FIELDS = ("value", "generate", "contentType", "tags", "notBefore", "expiresOn", "enabled", "recover")
GENERATE_FIELDS = ("length", "alphabet")


@dataclass(frozen=True)
class GenerateSpec:
    """Ask the app to draw the value itself (see shared.generator)."""

    length: int = generator.DEFAULT_LENGTH
    alphabet: str = generator.DEFAULT_ALPHABET


@dataclass(frozen=True)
class SecretWrite:
    """A validated PUT: exactly one of `value` / `generate`; None means "not given"."""

    name: str
    value: str | None = field(default=None, repr=False)  # repr=False: never in a traceback or log line
    generate: GenerateSpec | None = None
    content_type: str | None = None
    tags: dict[str, str] | None = None
    not_before: datetime | None = None
    expires_on: datetime | None = None
    enabled: bool | None = None
    recover: bool = False


@dataclass(frozen=True)
class ListQuery:
    max_results: int = MAX_RESULTS
    continuation_token: str | None = None


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            "Secret names are 1-127 characters of letters, digits and dashes (Key Vault's rule).",
            field="name",
        )
    return name


def parse_flag(params: Mapping[str, str], key: str) -> bool:
    """A boolean query parameter: absent → False; true/false/1/0 accepted; anything else is a 400."""
    raw = params.get(key)
    if raw is None or raw == "":
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidRequest(f"Query parameter {key} must be true or false.", field=key)


def require_json(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The body must be a JSON object sent as application/json."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            "Send the body as JSON with the header Content-Type: application/json.", field="Content-Type"
        )
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.", field="body")
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        # The parser's message can quote the body (and so a value): never echo it.
        raise InvalidRequest("The body is not valid UTF-8 JSON.", field="body") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("The body must be a JSON object.", field="body")
    return parsed


def _string(body: Mapping[str, Any], key: str, max_length: int) -> str | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequest(f"{key} must be a string.", field=key)
    if len(raw) > max_length:
        raise InvalidRequest(f"{key} is longer than {max_length} characters.", field=key)
    return raw


def _value(body: Mapping[str, Any]) -> str | None:
    raw = body.get("value")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequest("value must be a string.", field="value")
    if raw == "":
        raise InvalidRequest("value must not be empty.", field="value")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"value is larger than Key Vault's {MAX_VALUE_BYTES} bytes (UTF-8).", field="value"
        )
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("value must be valid Unicode (no lone surrogates).", field="value") from None
    return raw


def _generate(body: Mapping[str, Any]) -> GenerateSpec | None:
    raw = body.get("generate")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest(
            'generate must be an object like {"length": 32, "alphabet": "alphanumeric"}.', field="generate"
        )
    unknown = sorted(set(raw) - set(GENERATE_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"generate has unknown field {unknown[0]!r}; allowed: length, alphabet.",
            field=f"generate.{unknown[0]}",
        )
    length = raw.get("length", generator.DEFAULT_LENGTH)
    alphabet = raw.get("alphabet", generator.DEFAULT_ALPHABET)
    try:
        generator.check_spec(length, alphabet)
    except generator.GeneratorSpecError as exc:
        raise InvalidRequest(f"generate.{exc.part} {exc.problem}.", field=f"generate.{exc.part}") from None
    return GenerateSpec(length=length, alphabet=alphabet)


def validate_tags(tags: Mapping[str, str]) -> None:
    """The vault's tag limits, applied to the tags that will actually be written (bookkeeping included)."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(
            f"A secret can carry at most {MAX_TAGS} tags, including this app's bookkeeping tag; "
            f"this write would have {len(tags)}.",
            field="tags",
        )


def _tags(body: Mapping[str, Any], bookkeeping: Mapping[str, str]) -> dict[str, str] | None:
    raw = body.get("tags")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("tags must be an object of string names to string values.", field="tags")
    for key, value in raw.items():
        if not 1 <= len(key) <= MAX_TAG_NAME:
            raise InvalidRequest(f"Tag names are 1-{MAX_TAG_NAME} characters.", field="tags")
        if not isinstance(value, str):
            raise InvalidRequest(f"Tag {key!r} must have a string value.", field=f"tags.{key}")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidRequest(
                f"Tag {key!r} has a value longer than {MAX_TAG_VALUE} characters.", field=f"tags.{key}"
            )
        if key in bookkeeping and value != bookkeeping[key]:
            raise InvalidRequest(
                f"Tag {key!r} is this app's ownership tag and must be {bookkeeping[key]!r} (or left out).",
                field=f"tags.{key}",
            )
    validate_tags({**raw, **bookkeeping})
    return dict(raw)


def _instant(body: Mapping[str, Any], key: str) -> datetime | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequest(
            f"{key} must be an RFC 3339 date-time string, e.g. 2030-01-31T00:00:00Z.", field=key
        )
    example = "e.g. 2030-01-31T00:00:00Z"
    if not _RFC3339.fullmatch(raw):
        raise InvalidRequest(f"{key} must be an RFC 3339 date-time with a time zone, {example}.", field=key)
    date_part, _, rest = raw.upper().partition("T")
    # Python 3.11 parses at most 6 fractional digits; the vault keeps whole seconds anyway.
    rest = re.sub(r"\.(\d{1,6})\d*", r".\1", rest)
    try:
        parsed = datetime.fromisoformat(f"{date_part}T{rest}").astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"{key} is not a real date-time, {example}.", field=key) from None
    if not _EPOCH <= parsed < _YEAR_10000:
        raise InvalidRequest(f"{key} must be between 1970 and 9999.", field=key)
    return parsed


def parse_secret_write(
    name: str,
    body: Mapping[str, Any],
    *,
    bookkeeping_tags: Mapping[str, str],
    recover_param: bool = False,
) -> SecretWrite:
    """Validate a PUT body against the vault's limits; `bookkeeping_tags` count toward the tag limit."""
    validate_name(name)
    unknown = sorted(set(body) - set(WRITE_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"Unknown field {unknown[0]!r}; allowed: {', '.join(WRITE_FIELDS)}.", field=unknown[0]
        )
    value = _value(body)
    generate = _generate(body)
    if (value is None) == (generate is None):
        raise InvalidRequest('Send exactly one of "value" or "generate".', field="value")
    content_type = _string(body, "contentType", MAX_CONTENT_TYPE)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidRequest("enabled must be true or false.", field="enabled")
    recover = body.get("recover", False)
    if not isinstance(recover, bool):
        raise InvalidRequest("recover must be true or false.", field="recover")
    not_before = _instant(body, "notBefore")
    expires_on = _instant(body, "expiresOn")
    if not_before and expires_on and int(not_before.timestamp()) >= int(expires_on.timestamp()):
        raise InvalidRequest("notBefore must be earlier than expiresOn.", field="notBefore")
    return SecretWrite(
        name=name,
        value=value,
        generate=generate,
        content_type=content_type,
        tags=_tags(body, bookkeeping_tags),
        not_before=not_before,
        expires_on=expires_on,
        enabled=enabled,
        recover=recover or recover_param,
    )


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    raw = params.get("maxresults")
    max_results = MAX_RESULTS
    if raw is not None and raw != "":
        if not _MAX_RESULTS_PARAM.fullmatch(raw) or not 1 <= int(raw) <= MAX_RESULTS:
            raise InvalidRequest(
                f"maxresults must be an integer from 1 to {MAX_RESULTS}.", field="maxresults"
            )
        max_results = int(raw)
    token = params.get("continuationToken") or None
    if token is not None and len(token) > MAX_CONTINUATION_TOKEN:
        raise InvalidRequest("continuationToken is not one this API returned.", field="continuationToken")
    return ListQuery(max_results=max_results, continuation_token=token)


_VAULT_PARAM = re.compile(r"[0-9a-zA-Z.:-]{1,300}")


def vault_param(params: Mapping[str, str]) -> str | None:
    """`?vault=` — which configured vault (its name, host or URL); absent: the default vault."""
    raw = params.get("vault")
    if raw is None or raw == "":
        return None
    value = raw[len("https://") :] if raw.startswith("https://") else raw
    value = value[:-1] if value.endswith("/") else value
    if not _VAULT_PARAM.fullmatch(value):
        raise InvalidRequest("vault must be a configured vault's name (e.g. my-vault) or URL.", field="vault")
    return value
