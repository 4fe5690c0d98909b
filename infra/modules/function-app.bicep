// Flex Consumption (FC1) plan and the function app, as in the azd template's app/api.bicep: Linux, Python 3.11,
// the package deployed from a blob container by the user-assigned identity, identity-based AzureWebJobsStorage and
// Entra-authenticated Application Insights. Flex takes runtime and scale from functionAppConfig, so
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and WEBSITE_RUN_FROM_PACKAGE are not set (Flex rejects them).
//
// appSettings below holds every setting the app reads that Azure must set; the ones deliberately left to their
// defaults are listed, with the reason, in infra/settings-left-to-default.json (tests/infra checks both against
// the app's settings declaration).
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048
@description('Every vault the app manages; the first is KEY_VAULT_URL, the HTTP API\'s default.')
@minLength(1)
param vaultUris string[]
param rotationSchedule string
param cleanupSchedule string
param secretsNamePrefix string = ''
param cleanupAllowPurge bool = false
param sweepMode string = 'inline'
param queuesUsed bool = true
param extraAppSettings object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Settings the app reads (shared/settings.py and the %NAME% bindings), then the host's own.
var appReadSettings = {
  KEY_VAULT_URL: vaultUris[0]
  // All of them (the first again is harmless): sweeps cover each, the HTTP API picks one with ?vault=<name>.
  KEY_VAULT_URLS: join(vaultUris, ',')
  // ManagedIdentityCredential ignores AZURE_CLIENT_ID by itself; the app passes it explicitly.
  AZURE_CLIENT_ID: identityClientId
  // Only the managed identity in Azure; `default` (DefaultAzureCredential) is for developer machines.
  KEY_VAULT_CREDENTIAL: 'managed_identity'
  ROTATION_SCHEDULE: rotationSchedule
  CLEANUP_SCHEDULE: cleanupSchedule
  SECRETS_NAME_PREFIX: secretsNamePrefix
  CLEANUP_ALLOW_PURGE: cleanupAllowPurge ? 'true' : 'false'
  SWEEP_MODE: sweepMode
  // Rotations hold a blob lease per secret name in AzureWebJobsStorage: across Flex instances, always.
  ROTATION_LOCK: 'blob'
  // The key rotators' Resource Manager endpoint, right in every cloud (the app's default is the public one).
  AZURE_RESOURCE_MANAGER_URL: endsWith(environment().resourceManager, '/') ? substring(environment().resourceManager, 0, length(environment().resourceManager) - 1) : environment().resourceManager
  // OpenTelemetry through the app's own Azure Monitor exporter, authenticated as the managed identity
  // (PYTHON_ENABLE_OPENTELEMETRY stays unset, or telemetry would be exported twice).
  APP_TELEMETRY: 'azure-monitor'
}

var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var queueSettings = queuesUsed ? {
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
} : {}

// Later arguments win: extraAppSettings cannot replace the identity, storage or telemetry settings.
var appSettings = union(extraAppSettings, appReadSettings, queueSettings, hostSettings)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
  }
}

// The app settings as their own resource (pycep 0.7.1, used by tests/infra, keeps only one nested child).
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: appSettings
}

// No publishing with user names and passwords: azd deploys to the blob container with the identity.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
