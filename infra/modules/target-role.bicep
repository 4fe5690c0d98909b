// One role for the app identity on one rotation target, at the target's own scope (never its resource group).
// Bicep scopes a role assignment only to a resource of a literal type, so each supported type is listed; an id of
// another type fails the deployment with a message naming it (add the type here).
// Least-privileged roles per target: see infra/README.md (e.g. Storage Account Key Operator Service Role
// 81a9662b-bebf-436f-a333-f67b29880f12 for storage account keys; custom roles with only listKeys/regenerateKey for
// Cosmos DB, Service Bus, Event Hubs and Redis).
param targetResourceId string
@description('Role definition GUID, built-in or custom (a custom role is looked up in this subscription).')
param roleDefinitionId string
param principalId string

// /subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/{child type}/{child}]
var parts = split(targetResourceId, '/')
var resourceType = toLower('${parts[6]}/${parts[7]}')
var resourceName = parts[8]
var supported = [
  'microsoft.storage/storageaccounts'
  'microsoft.documentdb/databaseaccounts'
  'microsoft.servicebus/namespaces'
  'microsoft.eventhub/namespaces'
  'microsoft.cache/redis'
]
// A deployment-time error that names the offending id (int() of this text fails, and ARM quotes the text).
var typeCheck = contains(supported, resourceType) ? 'ok' : string(int('rotationTargetRoles: unsupported resource type ${resourceType} in ${targetResourceId}; add it to infra/modules/target-role.bicep'))
// Roles that would let the app (and anyone who controls its code) take over the target or grant access: refused.
var deniedRoles = [
  '8e3af657-a8ff-443c-a75c-2fe8c4bcb635' // Owner
  'b24988ac-6180-42a0-ab88-20f7382dd24c' // Contributor
  '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9' // User Access Administrator
  'f58310d9-a9f6-439a-9e8d-f62e7b41a168' // Role Based Access Control Administrator
  '00482a5a-887f-4fb3-b363-3b7fe8e74483' // Key Vault Administrator
]
var roleCheck = !contains(deniedRoles, toLower(roleDefinitionId)) ? 'ok' : string(int('rotationTargetRoles: role ${roleDefinitionId} on ${targetResourceId} is broader than rotation needs; use a role with only the key actions (infra/README.md)'))
// Evaluated in every role assignment's condition, so a refused entry fails before anything is assigned.
var allowed = typeCheck == 'ok' && roleCheck == 'ok'
var roleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (resourceType == 'microsoft.storage/storageaccounts') {
  name: resourceName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = if (resourceType == 'microsoft.documentdb/databaseaccounts') {
  name: resourceName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2021-11-01' existing = if (resourceType == 'microsoft.servicebus/namespaces') {
  name: resourceName
}

resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' existing = if (resourceType == 'microsoft.eventhub/namespaces') {
  name: resourceName
}

resource redis 'Microsoft.Cache/redis@2024-03-01' existing = if (resourceType == 'microsoft.cache/redis') {
  name: resourceName
}

resource onStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowed && resourceType == 'microsoft.storage/storageaccounts') {
  name: guid(targetResourceId, principalId, roleDefinitionId)
  scope: storageAccount
  properties: {
    roleDefinitionId: roleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onCosmos 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowed && resourceType == 'microsoft.documentdb/databaseaccounts') {
  name: guid(targetResourceId, principalId, roleDefinitionId)
  scope: cosmos
  properties: {
    roleDefinitionId: roleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onServiceBus 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowed && resourceType == 'microsoft.servicebus/namespaces') {
  name: guid(targetResourceId, principalId, roleDefinitionId)
  scope: serviceBus
  properties: {
    roleDefinitionId: roleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onEventHubs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowed && resourceType == 'microsoft.eventhub/namespaces') {
  name: guid(targetResourceId, principalId, roleDefinitionId)
  scope: eventHubs
  properties: {
    roleDefinitionId: roleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onRedis 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowed && resourceType == 'microsoft.cache/redis') {
  name: guid(targetResourceId, principalId, roleDefinitionId)
  scope: redis
  properties: {
    roleDefinitionId: roleId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output resourceType string = resourceType
