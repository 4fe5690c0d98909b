#!/bin/sh
# azd postdeploy hook: subscribe keyvault_events to every vault's Event Grid system topic (infra/events.bicep).
# It runs after the code is deployed, because the subscription's endpoint is the function itself.
# azd passes the provision outputs (AZURE_FUNCTION_APP_ID, KEY_VAULT_EVENT_TOPICS, ...) as environment variables.
# Needs the Azure CLI (`az login` as the same account as `azd auth login`).
set -eu

for name in AZURE_FUNCTION_APP_ID KEY_VAULT_EVENT_TOPICS AZURE_LOCATION AZURE_ENV_NAME; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "postdeploy: $name is not set; run 'azd provision' first (it writes the outputs of infra/main.bicep)." >&2
    exit 1
  fi
done

if ! command -v az >/dev/null 2>&1; then
  echo "postdeploy: the Azure CLI (az) is not installed, so keyvault_events is not yet subscribed to the vault events." >&2
  echo "postdeploy: install it, 'az login', then run 'azd hooks run postdeploy'. The timer sweep rotates meanwhile." >&2
  exit 1
fi

if [ "$KEY_VAULT_EVENT_TOPICS" = "[]" ]; then
  echo "postdeploy: no vault topics; nothing to subscribe."
  exit 0
fi

echo "postdeploy: subscribing keyvault_events to the vault system topics"
az deployment sub create \
  --name "kv-events-${AZURE_ENV_NAME}" \
  --location "$AZURE_LOCATION" \
  --template-file "$(dirname "$0")/../events.bicep" \
  --parameters functionAppId="$AZURE_FUNCTION_APP_ID" \
               topics="$KEY_VAULT_EVENT_TOPICS" \
               deadLetterContainerId="${DEAD_LETTER_CONTAINER_ID:-}" \
               eventsQueueStorageId="${EVENTS_QUEUE_STORAGE_ID:-}" \
  --only-show-errors --output none
if [ -n "${EVENTS_QUEUE_STORAGE_ID:-}" ]; then
  echo "postdeploy: done (SecretNearExpiry and SecretExpired now reach the kv-events queue: SWEEP_MODE=queue)"
else
  echo "postdeploy: done (SecretNearExpiry and SecretExpired now reach keyvault_events)"
fi
