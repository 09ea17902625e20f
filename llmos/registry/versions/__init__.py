"""Versions, aliases and history: finding rows for a reference, moving aliases, the event log."""
