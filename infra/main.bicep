// Deploys the Key Vault secrets app the way Microsoft's azd Flex Consumption Python template does
// (Azure-Samples/functions-quickstart-python-http-azd: subscription scope, one resource group, a user-assigned
// identity for everything, identity-based AzureWebJobsStorage, Entra-only Application Insights), plus what this app
// needs: a Key Vault (RBAC, soft delete, purge protection), Secrets Officer on every vault it manages, the vault's
// Event Grid system topic, the Storage queues, alert rules with an action group, and every app setting it reads.
//
// Only local modules (./modules): AVM registry modules (br/public:...) need `bicep restore` from the registry, which
// an offline check cannot do. tests/infra/ parses every file here and checks the policies in the README.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; with the subscription and location it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource (Flex Consumption must be offered there: `az functionapp list-flexconsumption-locations`).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person running azd (azd sets AZURE_PRINCIPAL_ID). Used only when grantDeveloperAccess is true.')
param principalId string = ''

@description('Also grant principalId Key Vault Secrets Officer on the created vault, and blob/queue/telemetry roles on the app storage and Application Insights, for trying things out. Off by default: production keeps people out of the data plane.')
param grantDeveloperAccess bool = false

@description('Create a new Key Vault in the resource group and point the app at it.')
param createKeyVault bool = true

@description('Name of the created vault (3-24 characters); empty = kv<token>.')
@maxLength(24)
param keyVaultName string = ''

@description('Vaults that already exist and that the app should manage. The first one is KEY_VAULT_URL when createKeyVault is false. Each entry: name, resourceGroup, optional subscriptionId (default: this subscription), optional systemTopicName (the vault\'s existing Event Grid system topic; a vault can have only one) and optional diagnostics (send AuditEvent logs to this deployment\'s workspace; default true).')
param existingKeyVaults existingVault[] = []

@description('Roles on the systems whose credentials the app rotates (rotators for storage keys, Cosmos DB, Service Bus ...). Each entry: the target\'s ARM resource id and the role definition GUID to grant the app identity there (see infra/README.md for the least-privileged role per target type).')
param rotationTargetRoles targetRole[] = []

@description('E-mail address that receives the alerts (failed rotations, poison messages, throttling); empty = an action group with no receiver (add one in the portal).')
param alertEmail string = ''

@description('NCRONTAB (seconds first) of scheduled_rotation.')
param rotationSchedule string = '0 0 * * * *'

@description('NCRONTAB (seconds first) of scheduled_cleanup.')
param cleanupSchedule string = '0 30 3 * * *'

@description('SECRETS_NAME_PREFIX: the only secret names the app may touch; empty = every name in the vault(s).')
param secretsNamePrefix string = ''

@description('CLEANUP_ALLOW_PURGE. The created vault has purge protection, so a purge there is refused and cleanup reports PurgeProtected.')
param cleanupAllowPurge bool = false

@description('SWEEP_MODE: inline = each timer sweeps every vault itself; queue = the timer enqueues one scan message per vault and the queue functions fan the work out over instances (the queues below).')
@allowed([
  'inline'
  'queue'
])
param sweepMode string = 'inline'

@description('Upper bound of instances per function scale group. Each instance has its own Key Vault limiter, so this also bounds the load on a vault.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Further app settings (name: value), e.g. ROTATION_CONCURRENCY. They cannot override the identity, storage or telemetry settings.')
param extraAppSettings object = {}

@description('Storage queues the app uses (created here; the host creates the -poison ones itself on first use).')
param queueNames string[] = [
  'kv-scan'
  'kv-rotate'
  'kv-cleanup'
  'kv-notify'
  'kv-events'
]

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

type existingVault = {
  name: string
  resourceGroup: string
  subscriptionId: string?
  systemTopicName: string?
  diagnostics: bool?
}

type targetRole = {
  resourceId: string
  roleDefinitionId: string
}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var createdVaultName = !empty(keyVaultName) ? keyVaultName : 'kv${resourceToken}'
var developerPrincipalId = grantDeveloperAccess ? principalId : ''

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
    developerPrincipalId: developerPrincipalId
    queuesUsed: !empty(queueNames)
  }
}

module vault 'modules/key-vault.bicep' = if (createKeyVault) {
  name: 'key-vault'
  scope: rg
  params: {
    name: createdVaultName
    location: location
    tags: tags
  }
}

// Every vault the app manages: the one created here (first, so it is KEY_VAULT_URL) and the existing ones.
var vaults = concat(
  createKeyVault ? [
    {
      name: createdVaultName
      resourceGroup: rg.name
      subscriptionId: subscription().subscriptionId
      systemTopicName: ''
      diagnostics: true
      developerAccess: true
    }
  ] : [],
  map(existingKeyVaults, v => {
    name: v.name
    resourceGroup: v.resourceGroup
    subscriptionId: v.?subscriptionId ?? subscription().subscriptionId
    systemTopicName: v.?systemTopicName ?? ''
    diagnostics: v.?diagnostics ?? true
    developerAccess: false
  })
)

module vaultAccess 'modules/vault-access.bicep' = [
  for (v, i) in vaults: {
    name: 'vault-access-${i}-${take(v.name, 40)}'
    scope: resourceGroup(v.subscriptionId, v.resourceGroup)
    params: {
      vaultName: v.name
      principalId: identity.outputs.principalId
      developerPrincipalId: v.developerAccess ? developerPrincipalId : ''
      systemTopicName: v.systemTopicName
      workspaceId: monitoring.outputs.workspaceId
      diagnostics: v.diagnostics
      actionGroupId: alerts.outputs.actionGroupId
      tags: tags
    }
    dependsOn: [
      vault
    ]
  }
]

// The Event Grid system topics' identities write undeliverable events to this container.
module deadLetterAccess 'modules/dead-letter-access.bicep' = {
  name: 'dead-letter-access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    containerName: storage.outputs.deadLetterContainerName
    principalIds: [for (v, i) in vaults: vaultAccess[i].outputs.topic.principalId]
  }
}

// SWEEP_MODE=queue: the topics deliver the vault events into the events queue (infra/events.bicep), as themselves.
var eventsQueueName = 'kv-events'
var eventsToQueue = (sweepMode == 'queue') && contains(queueNames, eventsQueueName)

module eventQueueAccess 'modules/event-queue-access.bicep' = if (eventsToQueue) {
  name: 'event-queue-access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    queueName: eventsQueueName
    principalIds: [for (v, i) in vaults: vaultAccess[i].outputs.topic.principalId]
  }
}

module targetRoles 'modules/target-role.bicep' = [
  for (t, i) in rotationTargetRoles: {
    name: 'target-role-${i}'
    scope: resourceGroup(split(t.resourceId, '/')[2], split(t.resourceId, '/')[4])
    params: {
      targetResourceId: t.resourceId
      roleDefinitionId: t.roleDefinitionId
      principalId: identity.outputs.principalId
    }
  }
]

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    vaultUris: [for (v, i) in vaults: vaultAccess[i].outputs.vaultUri]
    rotationSchedule: rotationSchedule
    cleanupSchedule: cleanupSchedule
    secretsNamePrefix: secretsNamePrefix
    cleanupAllowPurge: cleanupAllowPurge
    sweepMode: sweepMode
    queuesUsed: !empty(queueNames)
    extraAppSettings: extraAppSettings
  }
  // The app must not start before its identity may read storage, telemetry and the vault.
  dependsOn: [
    rbac
    vaultAccess
  ]
}

// azd writes these to .azure/<env>/.env; the postdeploy hook reads them. Names and ids only: nothing secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = app.outputs.name
output AZURE_FUNCTION_APP_ID string = app.outputs.id
output AZURE_FUNCTION_URL string = 'https://${app.outputs.defaultHostName}'
output AZURE_CLIENT_ID string = identity.outputs.clientId
output KEY_VAULT_URL string = vaultAccess[0].outputs.vaultUri
output AZURE_STORAGE_ACCOUNT string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
// Where the postdeploy hook creates the Event Grid subscriptions (infra/events.bicep): one per vault topic.
output KEY_VAULT_EVENT_TOPICS array = [for (v, i) in vaults: vaultAccess[i].outputs.topic]
output DEAD_LETTER_CONTAINER_ID string = storage.outputs.deadLetterContainerId
// SWEEP_MODE=queue: the events queue's storage account (the hook subscribes the topics to the queue); else empty.
output EVENTS_QUEUE_STORAGE_ID string = eventsToQueue ? storage.outputs.id : ''
