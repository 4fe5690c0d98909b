// SWEEP_MODE=queue: the vaults' Event Grid system topics deliver SecretNearExpiry/SecretExpired into the app's
// events queue with their own identities (shared keys are off), so each may add messages to that one queue and
// read nothing (Storage Queue Data Message Sender, queue scope).
param storageAccountName string
param queueName string
@description('Principal ids of the system topics; empty entries (topics this template did not create) are skipped.')
param principalIds string[] = []

var senderIds = filter(principalIds, p => !empty(p))

var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueServices 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueServices
  name: queueName
}

resource senders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in senderIds: {
    name: guid(queue.id, p, storageQueueDataMessageSender)
    scope: queue
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
      principalId: p
      principalType: 'ServicePrincipal'
    }
  }
]
