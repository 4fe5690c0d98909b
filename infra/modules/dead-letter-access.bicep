// The Event Grid system topics' identities may write undeliverable events into one blob container of the app's
// storage, and nowhere else (container scope; shared keys are off, so dead-lettering must use an identity).
param storageAccountName string
param containerName string
@description('Principal ids of the system topics; empty entries (topics this template did not create) are skipped.')
param principalIds string[] = []

var writerIds = filter(principalIds, p => !empty(p))

// Write the dead-letter blobs (no lease, no ACL management needed).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobServices
  name: containerName
}

resource writers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in writerIds: {
    name: guid(container.id, p, storageBlobDataContributor)
    scope: container
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
      principalId: p
      principalType: 'ServicePrincipal'
    }
  }
]
