// keyvault_events subscribed to one vault's system topic: SecretNearExpiry (rotate) and SecretExpired (alert).
// Event Grid retries for a day; what it still cannot deliver is dead-lettered into the app's storage by the topic's
// own identity (no keys), when the topic has one.
param topicName string
param functionResourceId string
@description('Resource id of the dead-letter blob container; empty = no dead-lettering.')
param deadLetterContainerId string = ''

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

// /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{name}
var deadLetterParts = split(deadLetterContainerId, '/')

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'keyvault-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: empty(deadLetterContainerId) ? null : {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: join(take(deadLetterParts, 9), '/')
          blobContainerName: last(deadLetterParts)
        }
      }
    }
  }
}

output id string = subscription.id
