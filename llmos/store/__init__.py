"""Metadata store: every table, one engine per database URL per process, and the migrations.

The only code that touches the database. Callers open a ``Store`` from ``Settings.database_url``
(a handle on the process's shared engine, migrated on first open) and use ``store.session()`` as a
context manager around one unit of work.
"""

from llmos.store.db import Store
from llmos.store.schema import metadata
from llmos.store.tables import AliasRow, Base, EventRow, ModelFileRow, ModelRow, ModelVersionRow

__all__ = ["AliasRow", "Base", "EventRow", "ModelFileRow", "ModelRow", "ModelVersionRow", "Store", "metadata"]
