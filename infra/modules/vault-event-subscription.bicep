// One vault's system topic subscribed for SecretNearExpiry (rotate) and SecretExpired (alert): to the keyvault_events
// function (SWEEP_MODE=inline), or to the app's events queue (SWEEP_MODE=queue: fanout_events turns each event into a
// rotate message, so event-driven rotations are paced and retried like swept ones). Queue delivery uses the topic's
// own identity (shared keys are off). Event Grid retries for a day; what it still cannot deliver is dead-lettered
// into the app's storage by the topic's identity (no keys), when the topic has one.
param topicName string
param functionResourceId string
@description('Resource id of the storage account holding the events queue; empty = deliver to the function.')
param queueStorageId string = ''
@description('The events queue (FANOUT_EVENTS_QUEUE).')
param queueName string = 'kv-events'
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
    destination: empty(queueStorageId) ? {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    } : null
    deliveryWithResourceIdentity: empty(queueStorageId) ? null : {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: queueStorageId
          queueName: queueName
          // -1: a message never expires in the queue (the default would drop it after 7 days).
          queueMessageTimeToLiveInSeconds: -1
        }
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
