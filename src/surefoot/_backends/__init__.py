"""Shared-state backends: SQLite for one host, Redis for a fleet (not part of the core)."""
