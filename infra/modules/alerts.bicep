// One action group and the app's log alerts, evaluated over Application Insights every 15 minutes.
// Each query reads what the app writes today (its "summary {json}" and keyvault_events log lines, the host's poison
// message log line) and, when APP_TELEMETRY is on, the OpenTelemetry metrics (kvrotator.*), so an alert fires
// whichever of the two is flowing. The vaults' own 429/saturation metric alerts are in vault-access.bicep.
param namePrefix string
param location string
param tags object = {}
param applicationInsightsId string
@description('E-mail receiver of the action group; empty = no receiver (add one later).')
param alertEmail string = ''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'kvsecrets'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var failedRotationsQuery = '''
let sweeps = traces
  | where message startswith "summary "
  | extend s = parse_json(substring(message, 8))
  | where tostring(s.kind) == "rotation" and tobool(s.dryRun) == false
  | extend failed = toint(s.outcomes.Failed)
  | where failed > 0
  | project timestamp, failed;
let events = traces
  | where message startswith "keyvault_events:" and message has " not rotated: "
  | project timestamp, failed = 1;
let metrics = customMetrics
  | where name == "kvrotator.rotation.failures"
  | project timestamp, failed = toint(valueSum);
union sweeps, events, metrics
| summarize failed = sum(failed)
| where failed > 0
'''

var poisonMessagesQuery = '''
let host = traces
  | where message has "-poison" and (message has "MaxDequeueCount" or message has "Moving message")
  | project timestamp, poisoned = 1;
let metrics = customMetrics
  | where name == "kvrotator.queue.poisoned"
  | project timestamp, poisoned = toint(valueSum);
union host, metrics
| summarize poisoned = sum(poisoned)
| where poisoned > 0
'''

var throttlingQuery = '''
let sweeps = traces
  | where message startswith "summary "
  | extend s = parse_json(substring(message, 8))
  | extend throttled = toint(s.throttled)
  | where throttled > 0
  | project timestamp, throttled;
let metrics = customMetrics
  | where name == "kvrotator.keyvault.throttled"
  | project timestamp, throttled = toint(valueSum);
union sweeps, metrics
| summarize throttled = sum(throttled)
| where throttled > 0
'''

var rules = [
  {
    name: 'failed-rotations'
    displayName: 'Secret rotations failed'
    description: 'A rotation failed (sweep summary outcomes.Failed, a keyvault_events rotation that was refused, or kvrotator.rotation.failures). GET /api/rotation/plan shows which secret and why; the summary line in the logs has the error codes.'
    severity: 1
    query: failedRotationsQuery
  }
  {
    name: 'poison-messages'
    displayName: 'Queue messages moved to poison'
    description: 'A queue message failed maxDequeueCount times and was moved to <queue>-poison. Look at the message in the poison queue (it never holds a secret value), fix the cause, and move it back or delete it.'
    severity: 2
    query: poisonMessagesQuery
  }
  {
    name: 'throttling'
    displayName: 'Key Vault throttled the app'
    description: 'The app saw HTTP 429 from Key Vault (sweep summary throttled, or kvrotator.keyvault.throttled). It backs off and finishes on a later run; sustained throttling means lowering ROTATION_CONCURRENCY or maximumInstanceCount.'
    severity: 3
    query: throttlingQuery
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${rule.name}-${namePrefix}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      evaluationFrequency: 'PT15M'
      windowSize: 'PT15M'
      scopes: [
        applicationInsightsId
      ]
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: false
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

output actionGroupId string = actionGroup.id
output alertRuleNames string[] = [for (rule, i) in rules: alertRules[i].name]
