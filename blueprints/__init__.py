"""Trigger adapters: parse the trigger input, call `shared/`, map the result or error. No business rules."""
