"""Local development only, never deployed: a local Key Vault and a local Functions host."""
