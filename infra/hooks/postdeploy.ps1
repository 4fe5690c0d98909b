# azd postdeploy hook (Windows): subscribe keyvault_events to every vault's Event Grid system topic
# (infra/events.bicep). Same steps as postdeploy.sh; needs the Azure CLI logged in as the azd account.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_FUNCTION_APP_ID', 'KEY_VAULT_EVENT_TOPICS', 'AZURE_LOCATION', 'AZURE_ENV_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Error "postdeploy: $name is not set; run 'azd provision' first (it writes the outputs of infra/main.bicep)."
    }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "postdeploy: the Azure CLI (az) is not installed; install it, 'az login', then 'azd hooks run postdeploy'. The timer sweep rotates meanwhile."
}
if ($env:KEY_VAULT_EVENT_TOPICS -eq '[]') {
    Write-Host 'postdeploy: no vault topics; nothing to subscribe.'
    exit 0
}

$topicsFile = New-TemporaryFile
try {
    # A parameters file avoids PowerShell's quoting of the JSON array.
    @{
        '$schema'      = 'https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#'
        contentVersion = '1.0.0.0'
        parameters     = @{
            functionAppId         = @{ value = $env:AZURE_FUNCTION_APP_ID }
            topics                = @{ value = @(ConvertFrom-Json $env:KEY_VAULT_EVENT_TOPICS) }
            deadLetterContainerId = @{ value = "$env:DEAD_LETTER_CONTAINER_ID" }
            eventsQueueStorageId  = @{ value = "$env:EVENTS_QUEUE_STORAGE_ID" }
        }
    } | ConvertTo-Json -Depth 10 | Set-Content -Path $topicsFile -Encoding utf8
    Write-Host 'postdeploy: subscribing keyvault_events to the vault system topics'
    az deployment sub create --name "kv-events-$($env:AZURE_ENV_NAME)" --location $env:AZURE_LOCATION `
        --template-file (Join-Path $PSScriptRoot '..' 'events.bicep') --parameters "@$topicsFile" `
        --only-show-errors --output none
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    Write-Host 'postdeploy: done (SecretNearExpiry and SecretExpired now reach keyvault_events)'
}
finally {
    Remove-Item $topicsFile -ErrorAction SilentlyContinue
}
