// Everything the app needs on one vault, deployed in the vault's own resource group (and subscription), so it works
// for the vault this template creates and for vaults that already exist elsewhere:
//   - Key Vault Secrets Officer for the app identity, at vault scope (write, rotate, disable, delete, recover, purge);
//   - the vault's Event Grid system topic (the subscription to keyvault_events is created after the code is
//     deployed, by infra/hooks/postdeploy.*, because the function resource exists only then);
//   - AuditEvent logs and metrics to the workspace (optional);
//   - metric alerts on the vault's own throttling (HTTP 429) and saturation, whichever client causes them.
param vaultName string
param principalId string
@description('A person also granted Secrets Officer on this vault (grantDeveloperAccess); empty = nobody.')
param developerPrincipalId string = ''
@description('The vault\'s existing Event Grid system topic; empty = create one (a vault can have only one).')
param systemTopicName string = ''
param workspaceId string
param diagnostics bool = true
param actionGroupId string
param tags object = {}

// Read/write/delete/recover/purge secrets (dataActions Microsoft.KeyVault/vaults/secrets/*); no keys, no
// certificates, no management plane. Secrets User or Reader would make every write answer VaultAccessDenied.
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource developerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(vault.id, developerPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: developerPrincipalId
    principalType: 'User'
  }
}

var createTopic = empty(systemTopicName)

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: 'evgt-${vaultName}'
  location: vault.location
  tags: tags
  // Its identity dead-letters undeliverable events into the app's storage (dead-letter-access.bicep).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource diagnosticSetting 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (diagnostics) {
  name: 'keyvault-secrets-functions'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource throttled 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'kv-throttled-${vaultName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Key Vault ${vaultName} answered HTTP 429 (throttled). The app backs off and retries, but sustained 429s mean rotations fall behind: lower ROTATION_CONCURRENCY or maximumInstanceCount, or spread secrets over more vaults.'
    severity: 2
    enabled: true
    scopes: [
      vault.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'throttled'
          metricNamespace: 'Microsoft.KeyVault/vaults'
          metricName: 'ServiceApiResult'
          dimensions: [
            {
              name: 'StatusCode'
              operator: 'Include'
              values: [
                '429'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

resource saturated 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'kv-saturation-${vaultName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Key Vault ${vaultName} is above 75 % of its transaction limits (SaturationShoebox): throttling is near.'
    severity: 3
    enabled: true
    scopes: [
      vault.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'saturation'
          metricNamespace: 'Microsoft.KeyVault/vaults'
          metricName: 'SaturationShoebox'
          operator: 'GreaterThan'
          threshold: 75
          timeAggregation: 'Average'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

output vaultId string = vault.id
output vaultUri string = vault.properties.vaultUri
@description('Where the postdeploy hook subscribes keyvault_events; principalId is empty for a topic this template did not create.')
output topic object = {
  subscriptionId: subscription().subscriptionId
  resourceGroup: resourceGroup().name
  name: createTopic ? topic.name : systemTopicName
  principalId: createTopic ? topic.identity.principalId : ''
}
