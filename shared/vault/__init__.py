"""The layer under the secrets API, rotation and cleanup: everything they share about talking to a vault.

- `versions`: the one model of a secret version's properties (never its value), the one ordering of a
  secret's versions, the one time formatter;
- `retry`: the one retry layer (azure-core's, configured for what it does not retry by default) and the
  one Retry-After parser;
- `calls`: the one call wrapper — Key Vault's per-vault rate limits, counting, and a per-call timeout
  that never outlasts the caller's deadline;
- `pager`: the one pager (the SDK's `by_page()`, the next page requested before this one is decided);
- `sweep`: the one sweep runner (bounded concurrency, a deadline, progress, one summary).
"""
