"""The domain: Key Vault secrets kept in order. Knows Key Vault, not HTTP or triggers."""
