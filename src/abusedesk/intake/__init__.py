"""Complaint intake: raw reports stored first, then parsed, verified, located and classified."""
