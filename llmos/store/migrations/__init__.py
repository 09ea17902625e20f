"""Alembic migrations of the metadata schema; ``llmos.store.migrate`` runs them from code."""
