"""Policies over the parsed templates (pycep-parser), the checks no `bicep build` or `what-if` runs for here:
least-privilege role assignments, no keys or secrets anywhere, identity-only storage and telemetry, a
vault that keeps deleted secrets, the Flex Consumption shape of Microsoft's azd template, modules wired
consistently, and the Event Grid subscription aimed at the function the app really has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra import bicep

# Role definition GUIDs (../shared/reference/scale-and-operations.md 6.2, azure-functions-python.md 7.1, 7.3),
# and the resource types each may be assigned on.
ALLOWED_ROLES: dict[str, tuple[str, set[str]]] = {
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": ("Key Vault Secrets Officer", {"Microsoft.KeyVault/vaults"}),
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": (
        "Storage Blob Data Owner",
        {"Microsoft.Storage/storageAccounts"},
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": (
        "Storage Queue Data Contributor",
        {"Microsoft.Storage/storageAccounts"},
    ),
    "3913510d-42f4-4e42-8a64-420c390055eb": (
        "Monitoring Metrics Publisher",
        {"Microsoft.Insights/components"},
    ),
    # SWEEP_MODE=queue: Event Grid's delivery identity adds messages to the events queue, and only that queue.
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": (
        "Storage Queue Data Message Sender",
        {"Microsoft.Storage/storageAccounts/queueServices/queues"},
    ),
    # Event Grid's dead-lettering identity, on one container only.
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Storage Blob Data Contributor",
        {"Microsoft.Storage/storageAccounts/blobServices/containers"},
    ),
}
# Rotation targets' roles are a parameter; this module must refuse these.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}
TARGET_ROLE_MODULE = bicep.INFRA / "modules" / "target-role.bicep"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

ROLE_ASSIGNMENTS = [r for r in bicep.all_resources() if r.type == "Microsoft.Authorization/roleAssignments"]


def _role_guid(resource: bicep.Resource) -> str:
    """The GUID a roleDefinitionId names: subscriptionResourceId/resourceId(..., <variable or literal>)."""
    expression: Any = resource.config["properties"]["roleDefinitionId"]
    names = bicep.variables(resource.file)
    if isinstance(expression, str) and expression in names:
        expression = names[expression]
    assert isinstance(expression, dict) and "function" in expression, (
        f"{resource.where()}: roleDefinitionId must be subscriptionResourceId('Microsoft.Authorization/"
        f"roleDefinitions', <GUID>), got {expression!r}"
    )
    function = expression["function"]
    assert function["type"] in {"subscription_resource_id", "resource_id"}, resource.where()
    arguments = function["parameters"]
    assert arguments["resource_type"] == "Microsoft.Authorization/roleDefinitions", resource.where()
    name = arguments["resource_name_1"]
    return str(names.get(name, name))


def test_role_assignments_exist() -> None:
    files = {bicep.rel(r.file) for r in ROLE_ASSIGNMENTS}
    assert {
        "infra/modules/rbac.bicep",
        "infra/modules/vault-access.bicep",
        "infra/modules/target-role.bicep",
        "infra/modules/dead-letter-access.bicep",
        "infra/modules/event-queue-access.bicep",
    } <= files


@pytest.mark.parametrize("resource", ROLE_ASSIGNMENTS, ids=lambda r: f"{r.file.name}:{r.symbol}")
def test_every_role_assignment_is_least_privilege(resource: bicep.Resource) -> None:
    config = resource.config
    assert "scope" in config, (
        f"{resource.where()} has no scope: it would apply to the whole resource group. "
        "Scope it to the resource."
    )
    properties = config["properties"]
    assert properties.get("principalType") in {"ServicePrincipal", "User"}, resource.where()
    if properties["principalType"] == "User":
        assert "developer" in json.dumps(resource.condition), (
            f"{resource.where()}: a role for a person must be conditional on the developer principal"
        )
    role = _role_guid(resource)
    if resource.file == TARGET_ROLE_MODULE:
        assert role == "roleDefinitionId", (
            "target-role.bicep grants only the role passed in rotationTargetRoles"
        )
        return
    assert GUID.match(role), f"{resource.where()}: role {role!r} is not a literal role definition GUID"
    assert role in ALLOWED_ROLES, (
        f"{resource.where()} assigns role {role}, which is not on the allowed list "
        f"({', '.join(name for name, _ in ALLOWED_ROLES.values())}); "
        "use one of them, or extend the list with a reason"
    )
    scoped = {r.symbol: r.type for r in bicep.resources(resource.file)}
    scope_type = scoped.get(config["scope"])
    name, types = ALLOWED_ROLES[role]
    assert scope_type in types, f"{resource.where()}: {name} belongs on {types}, not on {scope_type}"
    # The template's naming: guid(scope id, principal, role) - stable across redeployments, unique per triple.
    assert config["name"]["function"]["type"] == "guid", resource.where()


def test_rotation_target_roles_refuse_broad_roles() -> None:
    denied = bicep.variables(TARGET_ROLE_MODULE)["deniedRoles"]
    assert set(BROAD_ROLES) <= set(denied), f"target-role.bicep must refuse {BROAD_ROLES}"
    main = bicep.parameters(bicep.INFRA / "main.bicep")
    assert main["rotationTargetRoles"]["default"] == []
    for role in json.loads((bicep.INFRA / "main.parameters.json").read_text())["parameters"][
        "rotationTargetRoles"
    ]["value"]:
        assert role["roleDefinitionId"].lower() not in BROAD_ROLES


def test_key_vault_secrets_officer_on_every_vault() -> None:
    (officer,) = [r for r in ROLE_ASSIGNMENTS if r.symbol == "secretsOfficer"]
    assert officer.file.name == "vault-access.bicep" and officer.condition is None  # unconditional, per vault
    main = bicep.INFRA / "main.bicep"
    module = bicep.parsed(main)["modules"]["vaultAccess"]
    assert module["detail"]["path"] == "modules/vault-access.bicep"
    assert module["config"]["loop_type"]["detail"]["array_name"] == "vaults"
    # vaults = the created vault (when createKeyVault) + every existing one, so each gets the same access.
    text = bicep.render(bicep.variables(main)["vaults"])
    assert text.startswith("concat(createKeyVault ? [") and "map(existingKeyVaults" in text
    assert [r for r in vault_access_uses()] == ["vaultAccess"]


def vault_access_uses() -> list[str]:
    return [
        symbol
        for path in bicep.bicep_files()
        for symbol, _, _, ref in bicep.modules(path)
        if ref.endswith("vault-access.bicep")
    ]


# --- no keys, no secrets ----------------------------------------------------------------------------------

LIST_CALL = re.compile(r"\blist[A-Z]\w*\s*\(|\.list[A-Z]?\w*\s*\(", re.I)
SECRET_WORDS = re.compile(
    r"(?i)list_?\w*keys?\b|list_?secrets?|connection_?string|secret|password|\.keys\b|\bkeys?\[|accountkey|primarykey"
)
KEY_MATERIAL = re.compile(
    r"AccountKey=|SharedAccessKey|primaryKey|secondaryKey|InstrumentationKey=|listKeys", re.I
)


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=bicep.rel)
def test_no_keys_are_read_or_passed(path: Path) -> None:
    code = bicep.strip_comments(path.read_text(encoding="utf-8"))
    assert not LIST_CALL.search(code), f"{bicep.rel(path)} calls a list*() function: keys must never be read"
    assert not KEY_MATERIAL.search(code), f"{bicep.rel(path)} handles key material"
    assert "@secure()" not in code, f"{bicep.rel(path)} takes a secret parameter; the app needs none"


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=bicep.rel)
def test_outputs_carry_no_secret(path: Path) -> None:
    for name, value in bicep.outputs(path).items():
        text = bicep.render(value)
        leak = SECRET_WORDS.search(text)
        assert not leak, f"{bicep.rel(path)} output {name} exposes {leak.group(0)!r}: {text[:160]}"
        assert not SECRET_WORDS.search(name), f"{bicep.rel(path)} output {name}: its name says it is a secret"


def test_the_checks_catch_a_key() -> None:
    leak = "output k string = stg.listKeys().keys[0].value\n"
    assert LIST_CALL.search(bicep.strip_comments(leak))
    assert SECRET_WORDS.search("stg.listKeys().keys[0].value")
    assert SECRET_WORDS.search("appi.properties.ConnectionString")
    assert not SECRET_WORDS.search("createKeyVault ? [createdVaultAccess.outputs.topic] : []")
    assert not LIST_CALL.search(bicep.strip_comments("// listKeys() is never called\n"))


# --- identity only ----------------------------------------------------------------------------------------


def _one(kind: str, file: str | None = None) -> bicep.Resource:
    found = [r for r in bicep.all_resources() if r.type == kind and not r.existing]
    if file:
        found = [r for r in found if r.file.name == file]
    assert len(found) == 1, f"expected one {kind}, found {[r.where() for r in found]}"
    return found[0]


def app_settings() -> dict[str, Any]:
    settings = _one("Microsoft.Web/sites/config", "function-app.bicep")
    assert settings.config["name"] == "appsettings"
    return bicep.literal_keys(settings.file, settings.config["properties"])


def test_storage_is_identity_based_only() -> None:
    storage = _one("Microsoft.Storage/storageAccounts").config["properties"]
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings, "AzureWebJobsStorage (a connection string) must not be set"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert (
        bicep.render(settings["AzureWebJobsStorage__blobServiceUri"])
        == "storage.properties.primaryEndpoints.blob"
    )
    assert (
        bicep.render(settings["AzureWebJobsStorage__queueServiceUri"])
        == "storage.properties.primaryEndpoints.queue"
    )
    for name in settings:
        assert not name.endswith("ConnectionString") or name.startswith("APPLICATIONINSIGHTS"), name


def test_telemetry_is_entra_only() -> None:
    component = _one("Microsoft.Insights/components").config["properties"]
    assert component["DisableLocalAuth"] is True
    assert component["WorkspaceResourceId"]
    settings = app_settings()
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )


def test_the_app_uses_its_user_assigned_identity() -> None:
    site = _one("Microsoft.Web/sites")
    identity = site.config["identity"]
    assert identity["type"] == "UserAssigned"
    assert list(identity["userAssignedIdentities"]) == ["'${identityId}'"]
    assert app_settings()["AZURE_CLIENT_ID"] == "identityClientId"
    assert app_settings()["KEY_VAULT_CREDENTIAL"] == "managed_identity"
    deployment = site.config["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    for policy in ("ftp", "scm"):
        (resource,) = [
            r
            for r in bicep.all_resources()
            if r.type == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
            and r.config["name"] == policy
        ]
        assert resource.config["properties"]["allow"] is False


def test_the_vault_keeps_deleted_secrets() -> None:
    vault = _one("Microsoft.KeyVault/vaults").config["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True and vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault


def test_flex_consumption_python_311() -> None:
    plan = _one("Microsoft.Web/serverfarms").config
    assert (
        plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"} and plan["properties"]["reserved"] is True
    )
    site = _one("Microsoft.Web/sites").config
    assert site["kind"] == "functionapp,linux"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"]["maximumInstanceCount"] == "maximumInstanceCount"
    # Flex takes these from functionAppConfig and rejects them as app settings.
    for retired in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
        assert retired not in app_settings()


def test_no_registry_modules() -> None:
    """br:/ts: modules need `bicep restore` from a registry; every module here is a local file that exists."""
    for path in bicep.bicep_files():
        for symbol, target, _, reference in bicep.modules(path):
            assert not reference.startswith(("br:", "br/", "ts:", "ts/")), (
                f"{bicep.rel(path)} {symbol}: {reference}"
            )
            assert target.is_file(), f"{bicep.rel(path)} module {symbol}: {reference} does not exist"


# --- wiring between files (what the Bicep compiler would check) -------------------------------------------


def _module_outputs_used(path: Path) -> list[tuple[str, str]]:
    code = bicep.strip_comments(path.read_text(encoding="utf-8"))
    return re.findall(r"\b(\w+)(?:\[[^\]]*\])?!?\.outputs\.(\w+)", code)


@pytest.mark.parametrize(
    "path", [p for p in bicep.bicep_files() if bicep.parsed(p).get("modules")], ids=bicep.rel
)
def test_modules_get_the_params_they_declare_and_give_the_outputs_used(path: Path) -> None:
    targets = {symbol: target for symbol, target, _, _ in bicep.modules(path)}
    for symbol, target, passed, _ in bicep.modules(path):
        declared = bicep.parameters(target)
        unknown = set(passed) - set(declared)
        assert not unknown, (
            f"{bicep.rel(path)} passes {sorted(unknown)} to {bicep.rel(target)}, which has no such param"
        )
        missing = {name for name, p in declared.items() if "default" not in p} - set(passed)
        assert not missing, f"{bicep.rel(path)} module {symbol} does not pass required {sorted(missing)}"
    for symbol, output in _module_outputs_used(path):
        assert symbol in targets, f"{bicep.rel(path)}: {symbol}.outputs.{output} names no module"
        assert output in bicep.outputs(targets[symbol]), (
            f"{bicep.rel(path)} reads {symbol}.outputs.{output}, "
            f"which {bicep.rel(targets[symbol])} does not output"
        )


def test_parameters_file_matches_main() -> None:
    declared = bicep.parameters(bicep.INFRA / "main.bicep")
    given = json.loads((bicep.INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), (
        f"main.parameters.json sets unknown {sorted(set(given) - set(declared))}"
    )
    required = {name for name, p in declared.items() if "default" not in p}
    assert required <= set(given), f"main.parameters.json misses required {sorted(required - set(given))}"


def test_azure_yaml_is_the_template_shape() -> None:
    spec = yaml.safe_load((bicep.ROOT / "azure.yaml").read_text())
    assert spec["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert spec["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    for shell in spec["hooks"]["postdeploy"].values():
        hook = bicep.ROOT / shell["run"]
        assert hook.is_file(), shell["run"]
        assert "events.bicep" in hook.read_text()


def test_the_package_leaves_infra_out() -> None:
    ignored = {line.strip().rstrip("/") for line in (bicep.ROOT / ".funcignore").read_text().splitlines()}
    assert {"infra", "azure.yaml", ".azure", "localdev", "tests"} <= ignored


# --- events and queues ------------------------------------------------------------------------------------


def _registered_functions() -> set[str]:
    names: set[str] = set()
    for path in (bicep.ROOT / "blueprints").glob("*.py"):
        names |= set(re.findall(r"function_name\(\s*(?:name\s*=\s*)?\"(\w+)\"", path.read_text()))
    return names


def test_vault_events_reach_keyvault_events() -> None:
    (topic,) = [
        r for r in bicep.all_resources() if r.type == "Microsoft.EventGrid/systemTopics" and not r.existing
    ]
    assert topic.config["properties"]["topicType"] == "Microsoft.KeyVault.vaults"
    assert bicep.render(topic.config["properties"]["source"]) == "vault.id"
    (subscription,) = [
        r for r in bicep.all_resources() if r.type == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ]
    properties = subscription.config["properties"]
    assert properties["filter"]["includedEventTypes"] == [
        "Microsoft.KeyVault.SecretNearExpiry",
        "Microsoft.KeyVault.SecretExpired",
    ]
    # inline: straight to the function; queue: into the events queue, delivered by the topic's own identity
    destination = properties["destination"]["operator"]["operands"]
    assert bicep.render(destination["condition"]) == "empty(queueStorageId)"
    function_side = destination["true_value"]
    assert function_side["endpointType"] == "AzureFunction" and destination["false_value"] is None
    assert function_side["properties"]["maxEventsPerBatch"] == 1
    delivery = properties["deliveryWithResourceIdentity"]["operator"]["operands"]
    assert delivery["true_value"] is None and bicep.render(delivery["condition"]) == "empty(queueStorageId)"
    queued = delivery["false_value"]
    assert queued["identity"]["type"] == "SystemAssigned"
    assert queued["destination"]["endpointType"] == "StorageQueue"
    assert bicep.render(queued["destination"]["properties"]["queueMessageTimeToLiveInSeconds"]) == "minus(1)"
    function = bicep.parameters(bicep.INFRA / "events.bicep")["functionName"]["default"]
    assert function in _registered_functions(), (
        f"events.bicep subscribes {function}, which the app does not have"
    )
    assert properties["retryPolicy"]["maxDeliveryAttempts"] == 30


def test_queue_mode_sends_vault_events_to_the_events_queue() -> None:
    from shared.settings import load_settings

    main = bicep.variables(bicep.INFRA / "main.bicep")
    events_queue = load_settings({"KEY_VAULT_URL": "https://a.vault.azure.net"}).events_queue
    assert main["eventsQueueName"] == events_queue, "main.bicep's events queue is FANOUT_EVENTS_QUEUE's"
    assert main["eventsQueueName"] in bicep.parameters(bicep.INFRA / "main.bicep")["queueNames"]["default"]
    assert "equals(sweepMode, queue)" in bicep.render(main["eventsToQueue"])
    events = bicep.parameters(bicep.INFRA / "events.bicep")
    assert events["eventsQueueStorageId"]["default"] == "", "inline (the default) keeps the function endpoint"
    (sender,) = [r for r in ROLE_ASSIGNMENTS if r.file.name == "event-queue-access.bicep"]
    assert _role_guid(sender) == "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"


def test_queues_are_created_for_the_app() -> None:
    defaults = bicep.parameters(bicep.INFRA / "main.bicep")["queueNames"]["default"]
    declared, _ = bicep.declared_settings()
    for setting in declared:
        queue_name = isinstance(setting.default, str) and re.fullmatch(
            r"[a-z0-9][a-z0-9-]{2,62}", setting.default
        )
        if "QUEUE" in setting.name.upper() and queue_name:
            assert setting.default in defaults, (
                f"the app's {setting.name} defaults to queue {setting.default!r}: add it to queueNames in "
                "infra/main.bicep"
            )
    (queues,) = [
        r
        for r in bicep.all_resources()
        if r.type == "Microsoft.Storage/storageAccounts/queueServices/queues" and not r.existing
    ]
    assert queues.loop is not None


def test_alerts_cover_failures_poison_and_throttling() -> None:
    rules = bicep.variables(bicep.INFRA / "modules" / "alerts.bicep")["rules"]
    assert {rule["name"] for rule in rules} == {"failed-rotations", "poison-messages", "throttling"}
    queries = bicep.variables(bicep.INFRA / "modules" / "alerts.bicep")
    assert "kvrotator.rotation.failures" in queries["failedRotationsQuery"]
    assert "-poison" in queries["poisonMessagesQuery"]
    assert "kvrotator.keyvault.throttled" in queries["throttlingQuery"]
    (group,) = [r for r in bicep.all_resources() if r.type == "Microsoft.Insights/actionGroups"]
    vault_alerts = [r for r in bicep.all_resources() if r.type == "Microsoft.Insights/metricAlerts"]
    assert {r.symbol for r in vault_alerts} == {"throttled", "saturated"}
    assert group.config["location"] == "global"


# Only preview API versions exist for these.
PREVIEW_ONLY = {"Microsoft.Insights/diagnosticSettings"}


def test_api_versions_are_stable_and_consistent() -> None:
    versions: dict[str, set[str]] = {}
    for resource in bicep.all_resources():
        versions.setdefault(resource.type, set()).add(resource.api_version)
        if resource.type not in PREVIEW_ONLY:
            assert "preview" not in resource.api_version, f"{resource.where()} uses {resource.api_version}"
    mixed = {t: sorted(v) for t, v in versions.items() if len(v) > 1}
    assert not mixed, f"one API version per resource type across infra/, found {mixed}"


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=bicep.rel)
def test_no_unused_parameters_or_variables(path: Path) -> None:
    """What the Bicep linter's no-unused-params / no-unused-vars rules report."""
    code = bicep.strip_comments(path.read_text(encoding="utf-8"))
    for name in [*bicep.parameters(path), *bicep.variables(path)]:
        uses = len(re.findall(rf"(?<![\w.']){re.escape(name)}\b", code))
        assert uses > 1, f"{bicep.rel(path)} declares {name} but never uses it"


def test_the_readme_example_of_existing_vaults_fits_the_parameter_type() -> None:
    readme = (bicep.ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```json\n(\"existingKeyVaults\": .*?)\n```", readme, re.S)
    assert match, "README's Deploy to Azure section shows an existingKeyVaults example"
    entries = json.loads("{" + match.group(1) + "}")["existingKeyVaults"]["value"]
    fields = bicep.parsed(bicep.INFRA / "main.bicep")["types"]["existingVault"]["value"]
    for entry in entries:
        assert set(entry) <= set(fields), f"README example uses {sorted(set(entry) - set(fields))}"
        assert {"name", "resourceGroup"} <= set(entry)
        for key, value in entry.items():
            assert isinstance(value, bool) == (fields[key] == "bool"), f"README example {key}={value!r}"
