"""The OpenAPI 3.1 document of the HTTP API (an HTTP concern, so it lives with the HTTP blueprints),
built from the same limits and presets the code enforces.

Limits come from shared.validation and alphabets from shared.generator, so the document cannot drift
from what validation accepts. Served anonymously at GET /api/openapi.json (blueprints/meta.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from shared import generator
from shared.validation import (
    MAX_CONTENT_TYPE,
    MAX_RESULTS,
    MAX_TAG_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_VALUE_BYTES,
)

from .status import openapi_paths as status_paths

# Mirrors shared.rotation's enums (tests/app/test_meta.py checks they agree).
ROTATION_STATUSES = ["UpToDate", "Due", "Expired", "PendingRecovery", "Disabled", "Error"]
ROTATION_OUTCOMES = [
    "Rotated",
    "Resumed",
    "NotDue",
    "AlreadyRotated",
    "Stale",
    "Skipped",
    "NotManaged",
    "NotFound",
    "WouldRotate",
    "WouldResume",
    "Deferred",
    "Failed",
]

_VAULT_PARAM = {
    "name": "vault",
    "in": "query",
    "description": "Which configured vault (KEY_VAULT_URL, KEY_VAULT_URLS): its name (the host's first label), "
    "host or URL. Absent or empty: the first configured vault. An unknown vault is a 400 with target `vault`.",
    "schema": {"type": "string", "pattern": "^((https://)?[0-9a-zA-Z.:-]{1,300}/?)?$"},
}

_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Secret name: 1-127 letters, digits and dashes; must start with SECRETS_NAME_PREFIX.",
    "schema": {"type": "string", "pattern": "^[0-9a-zA-Z-]{1,127}$"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    """Error responses by status; every one has the same {"error": {code, message, target?}} body."""
    meaning = {
        400: "Invalid request: the message and `target` name the field; nothing was sent to the vault.",
        403: "Out of scope: the name lacks SECRETS_NAME_PREFIX, or the secret is not owned by this app.",
        404: "Secret not found.",
        409: "Conflict: deleted but recoverable (recover it, or write with ?recover=true), or being "
        "deleted/recovered, or the current version is disabled.",
        413: "The value is larger than 25,600 bytes (UTF-8), or the body is larger than 256 KiB.",
        415: "The body was not sent as Content-Type: application/json.",
        500: "The app is misconfigured (ConfigurationError names the setting) or hit a bug.",
        502: "The app's identity lacks a Key Vault role (the message names it), or the vault failed or refused.",
        503: "Key Vault is throttling; retry after Retry-After seconds.",
        504: "Key Vault did not answer in time (KEY_VAULT_TIMEOUT_SECONDS).",
    }
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    return {
        str(status): _json(_ref("Error"), meaning[status], retry_after if status == 503 else None)
        for status in statuses
    }


_VAULT_ERRORS = (500, 502, 503, 504)


def _schemas() -> dict[str, Any]:
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    tags = {
        "type": "object",
        "maxProperties": MAX_TAGS,
        "propertyNames": {"minLength": 1, "maxLength": MAX_TAG_NAME},
        "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
        "description": f"At most {MAX_TAGS} tags including the app's ownership tag (SECRETS_OWNER_TAG); "
        "omitted on a write: the current version's tags are kept.",
    }
    alphabets = "; ".join(f"`{k}`: {v}" for k, v in generator.ALPHABET_DESCRIPTIONS.items())
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string", "description": "What went wrong and what to do next."},
                        "target": {"type": "string", "description": "The field or parameter at fault."},
                    },
                }
            },
        },
        "Generate": {
            "type": "object",
            "additionalProperties": False,
            "description": "Let the app draw the value with Python's `secrets` module. Alphabets (all safe "
            f"inside connection strings and URLs): {alphabets}.",
            "properties": {
                "length": {
                    "type": "integer",
                    "minimum": generator.MIN_LENGTH,
                    "maximum": generator.MAX_LENGTH,
                    "default": generator.DEFAULT_LENGTH,
                },
                "alphabet": {
                    "type": "string",
                    "enum": list(generator.ALPHABETS),
                    "default": generator.DEFAULT_ALPHABET,
                },
            },
        },
        "SecretWrite": {
            "type": "object",
            "additionalProperties": False,
            "description": "Exactly one of `value` or `generate`. Repeating an identical write (same value, "
            "contentType, tags, enabled, notBefore, expiresOn) creates no version.",
            "properties": {
                "value": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"At most {MAX_VALUE_BYTES} bytes UTF-8. Never returned or logged.",
                },
                "generate": _ref("Generate"),
                "contentType": {
                    "type": "string",
                    "maxLength": MAX_CONTENT_TYPE,
                    "description": 'Omitted: kept from the current version; "" clears it.',
                },
                "tags": tags,
                "notBefore": {
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339 with a time zone; must be before expiresOn.",
                },
                "expiresOn": {
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339 with a time zone.",
                },
                "enabled": {"type": "boolean", "default": True},
                "recover": {
                    "type": "boolean",
                    "default": False,
                    "description": "Recover a deleted-but-recoverable secret of this name, then write.",
                },
            },
            "oneOf": [
                {"required": ["value"], "not": {"required": ["generate"]}},
                {"required": ["generate"], "not": {"required": ["value"]}},
            ],
        },
        "SecretMetadata": {
            "type": "object",
            "description": "A secret version's metadata; never its value.",
            "required": [
                "name",
                "version",
                "id",
                "contentType",
                "tags",
                "enabled",
                "notBefore",
                "expiresOn",
                "createdOn",
                "updatedOn",
            ],
            "properties": {
                "name": {"type": "string"},
                "version": {
                    "type": ["string", "null"],
                    "description": "null in list items (current version).",
                },
                "id": {"type": ["string", "null"], "format": "uri"},
                "contentType": {"type": ["string", "null"]},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "enabled": {"type": ["boolean", "null"]},
                "notBefore": nullable_time,
                "expiresOn": nullable_time,
                "createdOn": nullable_time,
                "updatedOn": nullable_time,
            },
        },
        "SecretDetails": {
            "allOf": [
                _ref("SecretMetadata"),
                {
                    "type": "object",
                    "properties": {
                        "versions": {
                            "type": "array",
                            "items": _ref("SecretMetadata"),
                            "description": "Every version, newest first (only with ?versions=true).",
                        }
                    },
                },
            ]
        },
        "SecretList": {
            "type": "object",
            "required": ["value", "continuationToken"],
            "properties": {
                "value": {"type": "array", "items": _ref("SecretMetadata")},
                "continuationToken": {
                    "type": ["string", "null"],
                    "description": "Pass back to get the next page; null on the last page. A "
                    "page can be short (even empty) and still have a token.",
                },
            },
        },
        "DeletedSecret": {
            "type": "object",
            "required": ["name", "recoveryId", "deletedOn", "scheduledPurgeDate"],
            "properties": {
                "name": {"type": "string"},
                "id": {"type": ["string", "null"]},
                "recoveryId": {"type": ["string", "null"]},
                "deletedOn": nullable_time,
                "scheduledPurgeDate": nullable_time,
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["alive", "ready", "notReady"]},
                "vaultUrl": {"type": ["string", "null"]},
                "durationMs": {"type": "number"},
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "RotationResult": {
            "type": "object",
            "description": "What rotating one secret did (or would do, with dryRun=true).",
            "required": ["name", "outcome", "reason", "dryRun"],
            "properties": {
                "name": {"type": "string"},
                "outcome": {"type": "string", "enum": ROTATION_OUTCOMES},
                "reason": {"type": "string"},
                "dryRun": {"type": "boolean"},
                "status": {"type": "string", "enum": ROTATION_STATUSES},
                "version": {"type": "string"},
                "previousVersion": {"type": "string"},
                "operationId": {"type": "string"},
                "notBefore": {"type": "string", "format": "date-time"},
                "expiresOn": {"type": "string", "format": "date-time"},
                "revokePreviousAfter": {"type": "string", "format": "date-time"},
                "errorCode": {"type": "string"},
                "target": {
                    "type": "object",
                    "description": "Dry run of a rotator of an external target: which credential would change "
                    "and whether the target and any admin secret log in (no writes).",
                },
            },
        },
        "SweepSummary": {
            "type": "object",
            "description": "One rotation or cleanup run (or its dry run): counts, duration, transactions.",
            "additionalProperties": True,
            "properties": {
                "kind": {"type": "string"},
                "dryRun": {"type": "boolean"},
                "startedAt": {"type": ["string", "null"], "format": "date-time"},
                "durationSeconds": {"type": "number"},
                "listed": {"type": "integer"},
                "managed": {"type": "integer"},
                "statuses": {"type": "object", "additionalProperties": {"type": "integer"}},
                "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
                "transactions": {"type": "integer"},
                "remaining": {"type": "integer"},
                "errors": {"type": "array", "items": {"type": "object"}},
                "secrets": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "Per-secret detail (plan only).",
                },
            },
        },
        "RotationPlan": {
            "type": "object",
            "description": "What the next rotation and cleanup would do, per managed secret, without reading "
            "any value; and the last real runs' summaries.",
            "required": ["vault", "rotation", "cleanup", "lastRuns"],
            "properties": {
                "vault": {"type": "string", "description": "The vault this plan is of."},
                "rotation": {
                    "allOf": [
                        _ref("SweepSummary"),
                        {
                            "type": "object",
                            "properties": {
                                "secrets": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["name", "status", "reason"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "status": {"type": "string", "enum": ROTATION_STATUSES},
                                            "reason": {"type": "string"},
                                            "expiresOn": {"type": "string", "format": "date-time"},
                                            "dueOn": {"type": "string", "format": "date-time"},
                                            "action": {"type": "string", "enum": ROTATION_OUTCOMES},
                                        },
                                    },
                                }
                            },
                        },
                    ]
                },
                "cleanup": _ref("SweepSummary"),
                "lastRuns": {"type": "object", "additionalProperties": _ref("SweepSummary")},
            },
        },
    }


def _paths() -> dict[str, Any]:
    metadata = _ref("SecretMetadata")
    bool_query = {
        "type": "string",
        "enum": ["true", "false", "1", "0", ""],
        "description": "Empty means false.",
    }
    return {
        "/api/secrets": {
            "get": {
                "operationId": "listSecrets",
                "summary": "List metadata of secrets under SECRETS_NAME_PREFIX, one vault page at a time.",
                "parameters": [
                    {
                        "name": "maxresults",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
                    },
                    {"name": "continuationToken", "in": "query", "schema": {"type": "string"}},
                    _VAULT_PARAM,
                ],
                "responses": {
                    "200": _json(_ref("SecretList"), "A page of metadata."),
                    **_errors(400, *_VAULT_ERRORS),
                },
            }
        },
        "/api/secrets/{name}": {
            "parameters": [_NAME_PARAM, _VAULT_PARAM],
            "put": {
                "operationId": "putSecret",
                "summary": "Create a secret or add a version; identical repeats create nothing.",
                "parameters": [
                    {
                        "name": "recover",
                        "in": "query",
                        "schema": bool_query,
                        "description": "Recover a deleted-but-recoverable secret first.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SecretWrite")}},
                },
                "responses": {
                    "201": _json(metadata, "Created: the name was new."),
                    "200": _json(
                        metadata, "A version was added, or the write was identical (no new version)."
                    ),
                    **_errors(400, 403, 409, 413, 415, *_VAULT_ERRORS),
                },
            },
            "get": {
                "operationId": "getSecret",
                "summary": "Metadata of the current version (and of all versions with ?versions=true).",
                "parameters": [{"name": "versions", "in": "query", "schema": bool_query}],
                "responses": {
                    "200": _json(_ref("SecretDetails"), "The metadata."),
                    **_errors(400, 403, 404, 409, *_VAULT_ERRORS),
                },
            },
            "delete": {
                "operationId": "deleteSecret",
                "summary": "Soft-delete an owned secret (all versions); it stays recoverable until purged.",
                "responses": {
                    "200": _json(_ref("DeletedSecret"), "Deleted; recoverable."),
                    **_errors(400, 403, 404, 409, *_VAULT_ERRORS),
                },
            },
        },
        "/api/secrets/{name}/recover": {
            "parameters": [_NAME_PARAM, _VAULT_PARAM],
            "post": {
                "operationId": "recoverSecret",
                "summary": "Recover a deleted-but-recoverable secret.",
                "responses": {
                    "200": _json(metadata, "Recovered; the current version's metadata."),
                    **_errors(400, 403, 404, 409, *_VAULT_ERRORS),
                },
            },
        },
        "/api/secrets/{name}/rotate": {
            "parameters": [_NAME_PARAM, _VAULT_PARAM],
            "post": {
                "operationId": "rotateSecret",
                "summary": "Rotate one secret now (a new generated version); ?dryRun=true only reports.",
                "parameters": [{"name": "dryRun", "in": "query", "schema": bool_query}],
                "responses": {
                    "200": _json(_ref("RotationResult"), "The rotation result."),
                    **_errors(400, 403, 404, 409, *_VAULT_ERRORS),
                },
            },
        },
        "/api/rotation/plan": {
            "get": {
                "operationId": "getRotationPlan",
                "summary": "Rotation status of every managed secret (UpToDate, Due, Expired, "
                "PendingRecovery, Disabled, Error, each with a reason), the cleanup plan, and the last runs.",
                "parameters": [_VAULT_PARAM],
                "responses": {
                    "200": _json(_ref("RotationPlan"), "The plan."),
                    **_errors(400, *_VAULT_ERRORS),
                },
            }
        },
        **status_paths(_errors(400, *_VAULT_ERRORS)),
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness; with ?ready=true, readiness: the identity can list the vault.",
                "security": [],
                "parameters": [{"name": "ready", "in": "query", "schema": bool_query}],
                "responses": {
                    "200": _json(_ref("Health"), "Alive (or ready)."),
                    "400": _json(_ref("Error"), "Invalid query parameter."),
                    "503": _json(_ref("Health"), "Not ready: `error.message` says what to fix."),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Key Vault secrets functions",
            "version": "1.0.0",
            "description": "Write, inspect, delete, recover and rotate Azure Key Vault secrets through an "
            "Azure Functions app on managed identity. Values go in, never out.",
        },
        "servers": [{"url": "/"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
