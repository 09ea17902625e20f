"""Metadata store: SQLAlchemy tables and the session factory (SQLite in WAL mode by default).

The only code that writes metadata. Callers open a ``Store`` from ``Settings.database_url``
and use ``store.session()`` as a context manager around one unit of work.
"""

from llmos.store.db import Store
from llmos.store.tables import AliasRow, Base, EventRow, ModelFileRow, ModelRow, ModelVersionRow

__all__ = ["AliasRow", "Base", "EventRow", "ModelFileRow", "ModelRow", "ModelVersionRow", "Store"]
