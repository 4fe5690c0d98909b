// Drives the unmodified JavaScript Key Vault SDK against the local vault and prints ONE JSON summary line.
//
// Why: issue #2 promises that SDKs other than Python's work against localdev/vault unmodified, over verified
// HTTPS with managed identity. tests/interop/test_javascript_sdk.py runs this script and asserts on the summary.
//
// Input (environment): KEY_VAULT_URL, IDENTITY_ENDPOINT + IDENTITY_HEADER (read by ManagedIdentityCredential's
// App Service source), NODE_EXTRA_CA_CERTS (the vault's CA: TLS stays verified), INTEROP_PREFIX (secret-name
// prefix), INTEROP_VALUES (JSON {first, second, backup, bulk}: values chosen by the test), INTEROP_EXPIRES_ON
// (Unix seconds), INTEROP_BULK (how many extra secrets to list), INTEROP_MODE ("full" or "tls-probe").
// Output: secret names, versions, counts, statuses and booleans ("value matches") — never a secret value.
// Exit 0 with the summary on stdout; exit 1 with the failing step, HTTP status and error code on stderr.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ManagedIdentityCredential } from "@azure/identity";
import { SecretClient } from "@azure/keyvault-secrets";

// The SDK's HTTP error (RestError from @azure/core-rest-pipeline; @azure/keyvault-secrets re-exports it only
// from 4.12, which needs Node 22): recognised by its name and status, whatever copy of the class threw it.
const isRestError = (error) => error?.name === "RestError" && typeof error.statusCode === "number";

const POLL = { intervalInMs: 25 };
const env = process.env;
let step = "start";

function required(name) {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set: run this script through tests/interop/test_javascript_sdk.py`);
  return value;
}

function packageVersion(name) {
  const require = createRequire(import.meta.url);
  return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
}

function client(retryOptions) {
  // disableChallengeResourceVerification: the JS name of Python's verify_challenge_resource=False (loopback vault).
  return new SecretClient(required("KEY_VAULT_URL"), new ManagedIdentityCredential(), {
    disableChallengeResourceVerification: true,
    retryOptions,
  });
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function pages(iterable, settings) {
  const sizes = [];
  const names = [];
  for await (const page of iterable.byPage(settings)) {
    sizes.push(page.length);
    names.push(...page.map((p) => p.name));
  }
  return { sizes, names };
}

async function statusOf(promise) {
  try {
    await promise;
    return { statusCode: 200 };
  } catch (error) {
    if (!isRestError(error)) throw error;
    const inner = error.details?.error?.innerError?.code;
    return { restError: true, statusCode: error.statusCode, code: error.code, ...(inner ? { innerCode: inner } : {}) };
  }
}

const seconds = (date) => (date ? Math.floor(date.getTime() / 1000) : null);

async function tlsProbe() {
  // One attempt, no retries: a TLS refusal must surface at once.
  step = "getSecret without the vault CA";
  try {
    await client({ maxRetries: 0 }).getSecret(`${required("INTEROP_PREFIX")}-probe`);
    return { connected: true };
  } catch (error) {
    return { connected: false, errorCode: error.code ?? null, errorName: error.name };
  }
}

async function full() {
  const prefix = required("INTEROP_PREFIX");
  const values = JSON.parse(required("INTEROP_VALUES"));
  const expiresOn = new Date(Number(required("INTEROP_EXPIRES_ON")) * 1000);
  const bulkCount = Number(required("INTEROP_BULK"));
  const kv = client({ retryDelayInMs: 50, maxRetryDelayInMs: 200 });
  const main = `${prefix}-main`;
  const backupName = `${prefix}-backup`;
  const summary = { sdk: {
    "@azure/keyvault-secrets": packageVersion("@azure/keyvault-secrets"),
    "@azure/identity": packageVersion("@azure/identity"),
  } };

  step = "setSecret (tags, contentType, expiresOn)";
  const first = await kv.setSecret(main, values.first, {
    tags: { sdk: "javascript", step: "first" }, contentType: "text/plain", expiresOn,
  });
  step = "setSecret (second version)";
  const second = await kv.setSecret(main, values.second, { contentType: "application/json" });
  summary.set = {
    name: first.name, firstVersion: first.properties.version, secondVersion: second.properties.version,
    tags: first.properties.tags, contentType: first.properties.contentType,
    expiresOn: seconds(first.properties.expiresOn), enabled: first.properties.enabled,
    recoveryLevel: first.properties.recoveryLevel, recoverableDays: first.properties.recoverableDays,
    vaultUrl: first.properties.vaultUrl,
    valueEchoed: first.value === values.first,
  };

  step = "getSecret (latest)";
  const latest = await kv.getSecret(main);
  step = "getSecret (by version)";
  const byVersion = await kv.getSecret(main, { version: first.properties.version });
  summary.get = {
    latestVersion: latest.properties.version, latestValueMatches: latest.value === values.second,
    latestContentType: latest.properties.contentType,
    byVersionVersion: byVersion.properties.version, byVersionValueMatches: byVersion.value === values.first,
    byVersionTags: byVersion.properties.tags, byVersionExpiresOn: seconds(byVersion.properties.expiresOn),
  };

  step = "updateSecretProperties";
  const updated = await kv.updateSecretProperties(main, first.properties.version, {
    enabled: false, tags: { sdk: "javascript", step: "updated" }, contentType: "text/csv",
  });
  step = "getSecret (disabled version)";
  const disabledGet = await statusOf(kv.getSecret(main, { version: first.properties.version }));
  summary.update = {
    version: updated.version, enabled: updated.enabled, tags: updated.tags, contentType: updated.contentType,
    expiresOn: seconds(updated.expiresOn), getDisabled: disabledGet,
  };

  step = "listPropertiesOfSecretVersions";
  const versions = await collect(kv.listPropertiesOfSecretVersions(main));
  summary.versions = versions
    .map((p) => ({ version: p.version, enabled: p.enabled, name: p.name }))
    .sort((a, b) => a.version.localeCompare(b.version));

  step = "setSecret (bulk, for paging)";
  const bulkNames = Array.from({ length: bulkCount }, (_, i) => `${prefix}-bulk-${String(i).padStart(3, "0")}`);
  for (let i = 0; i < bulkNames.length; i += 10) {
    await Promise.all(bulkNames.slice(i, i + 10).map((name) => kv.setSecret(name, values.bulk)));
  }
  step = "listPropertiesOfSecrets byPage({maxPageSize: 10})";
  const small = await pages(kv.listPropertiesOfSecrets(), { maxPageSize: 10 });
  step = "listPropertiesOfSecrets byPage() (service page size)";
  const standard = await pages(kv.listPropertiesOfSecrets());
  step = "listPropertiesOfSecrets (item iterator)";
  const items = await collect(kv.listPropertiesOfSecrets());
  summary.list = {
    smallPageSizes: small.sizes, smallNames: small.names.sort(),
    standardPageSizes: standard.sizes, itemCount: items.length,
    itemNamesMatch: JSON.stringify(items.map((p) => p.name).sort()) === JSON.stringify(small.names),
  };

  step = "beginDeleteSecret + pollUntilDone";
  const deletePoller = await kv.beginDeleteSecret(main, POLL);
  const deleted = await deletePoller.pollUntilDone();
  step = "getSecret of a deleted secret";
  const whileDeleted = await statusOf(kv.getSecret(main));
  step = "getDeletedSecret";
  const deletedAgain = await kv.getDeletedSecret(main);
  step = "listDeletedSecrets";
  const deletedList = await collect(kv.listDeletedSecrets());
  summary.delete = {
    name: deleted.name, recoveryId: deleted.recoveryId, deletedOn: seconds(deleted.deletedOn),
    scheduledPurgeDate: seconds(deleted.scheduledPurgeDate), pollerDone: deletePoller.isDone(),
    getWhileDeleted: whileDeleted,
    getDeleted: { name: deletedAgain.name, recoveryId: deletedAgain.recoveryId,
      version: deletedAgain.properties.version, valueAbsent: deletedAgain.value === undefined },
    listedNames: deletedList.map((d) => d.name).sort(),
  };

  step = "beginRecoverDeletedSecret + pollUntilDone";
  const recoverPoller = await kv.beginRecoverDeletedSecret(main, POLL);
  const recovered = await recoverPoller.pollUntilDone();
  step = "getSecret after recovery";
  const afterRecover = await kv.getSecret(main);
  step = "listPropertiesOfSecretVersions after recovery";
  const versionsAfter = await collect(kv.listPropertiesOfSecretVersions(main));
  summary.recover = {
    name: recovered.name, version: recovered.version, pollerDone: recoverPoller.isDone(),
    latestVersion: afterRecover.properties.version, valueMatches: afterRecover.value === values.second,
    versionCount: versionsAfter.length,
  };

  step = "setSecret (backup)";
  const original = await kv.setSecret(backupName, values.backup, { tags: { sdk: "javascript", step: "backup" } });
  step = "backupSecret";
  const blob = await kv.backupSecret(backupName);
  step = "beginDeleteSecret (backup) + pollUntilDone";
  await (await kv.beginDeleteSecret(backupName, POLL)).pollUntilDone();
  step = "purgeDeletedSecret";
  await kv.purgeDeletedSecret(backupName);
  step = "getDeletedSecret after purge";
  const afterPurge = await statusOf(kv.getDeletedSecret(backupName));
  step = "restoreSecretBackup";
  const restored = await kv.restoreSecretBackup(blob);
  step = "getSecret after restore";
  const afterRestore = await kv.getSecret(backupName);
  summary.backup = {
    blobBytes: blob?.byteLength ?? 0, blobIsBytes: blob instanceof Uint8Array,
    originalVersion: original.properties.version, afterPurge,
    restoredName: restored.name, restoredVersion: restored.version, restoredTags: restored.tags,
    valueMatches: afterRestore.value === values.backup, afterRestoreVersion: afterRestore.properties.version,
  };

  step = "getSecret (missing)";
  summary.missing = await statusOf(kv.getSecret(`${prefix}-missing`));
  return summary;
}

try {
  const summary = env.INTEROP_MODE === "tls-probe" ? await tlsProbe() : await full();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
} catch (error) {
  // Status and service error code only: a message could one day carry a value, so it is not printed.
  const detail = isRestError(error)
    ? `RestError status ${error.statusCode} code ${error.code}`
    : `${error.name}${error.code ? ` ${error.code}` : ""}: ${error.message}`;
  process.stderr.write(`JavaScript SDK step failed: ${step}: ${detail}\n`);
  process.exit(1);
}
