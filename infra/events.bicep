// Event Grid subscriptions of keyvault_events to each vault's system topic. Deployed by infra/hooks/postdeploy.*
// after `azd deploy`, because an AzureFunction endpoint must name a function that already exists
// (.../sites/<app>/functions/keyvault_events appears only once the code is deployed) - the same split as
// Microsoft's Event Grid + Flex azd sample (topic in the template, subscription after deploy).
// Re-running it is harmless: the subscriptions are updated in place.
targetScope = 'subscription'

@description('Resource id of the function app (main.bicep output AZURE_FUNCTION_APP_ID).')
param functionAppId string

@description('main.bicep output KEY_VAULT_EVENT_TOPICS: [{subscriptionId, resourceGroup, name, principalId}].')
param topics array

@description('main.bicep output DEAD_LETTER_CONTAINER_ID: where undeliverable events go (topics this template created).')
param deadLetterContainerId string = ''

@description('The Event Grid triggered function.')
param functionName string = 'keyvault_events'

@description('main.bicep output EVENTS_QUEUE_STORAGE_ID: the storage account of the events queue when SWEEP_MODE=queue (events then go to the queue, not the function); empty otherwise.')
param eventsQueueStorageId string = ''

@description('The events queue (FANOUT_EVENTS_QUEUE).')
param eventsQueueName string = 'kv-events'

module subscriptions 'modules/vault-event-subscription.bicep' = [
  for (t, i) in topics: {
    name: 'kv-events-${i}-${take(t.name, 40)}'
    scope: resourceGroup(t.subscriptionId, t.resourceGroup)
    params: {
      topicName: t.name
      functionResourceId: '${functionAppId}/functions/${functionName}'
      deadLetterContainerId: empty(t.principalId) ? '' : deadLetterContainerId
      // Queue delivery needs the topic's identity: a topic this template did not create keeps the function.
      queueStorageId: empty(t.principalId) ? '' : eventsQueueStorageId
      queueName: eventsQueueName
    }
  }
]
