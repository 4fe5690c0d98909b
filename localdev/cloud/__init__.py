"""The local Azure control plane: Resource Manager key operations, Microsoft Graph app passwords, an
Entra token endpoint and a Shared Key-checking blob endpoint, so key and app-secret rotators run for real."""
