// Least-privilege roles of the app identity on its own storage and telemetry (the vault roles are in
// vault-access.bicep). Same shape as the azd template's app/rbac.bicep: name = guid(scope, principal, role).
param storageAccountName string
param applicationInsightsName string
param principalId string
@description('A person who may use the same data planes while trying things out; empty = nobody.')
param developerPrincipalId string = ''
@description('Whether the app uses Storage queues (then it needs Storage Queue Data Contributor).')
param queuesUsed bool = true

// Host storage (timers' schedule monitor and singleton locks, deployment package) and the rotation leases:
// acquiring, renewing and breaking a blob lease needs more than Blob Data Contributor in the host's case.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Queue triggers and outputs, and the host's move of a message to <queue>-poison (creates that queue).
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Entra-authenticated ingestion into Application Insights (the component has local auth disabled).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queuesUsed) {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource developerBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(storage.id, developerPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: developerPrincipalId
    principalType: 'User'
  }
}

resource developerQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queuesUsed && !empty(developerPrincipalId)) {
  name: guid(storage.id, developerPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: developerPrincipalId
    principalType: 'User'
  }
}

resource developerMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(applicationInsights.id, developerPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: developerPrincipalId
    principalType: 'User'
  }
}
