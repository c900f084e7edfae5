"""Outgoing messages: the outbox the case engine writes to."""
