"""Enforcement: the actions that disconnect, reconnect and terminate, kept as records."""
