"""A local Azure Key Vault (secrets data plane) plus a managed-identity endpoint, for development and tests.

The unmodified `azure-keyvault-secrets` SDK (sync and aio) and `ManagedIdentityCredential` talk to it over
real HTTPS. Start it with `python -m localdev.vault` or `localdev.vault.server.start_vault(...)`.
"""
