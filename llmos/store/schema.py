"""Every table of the store in one ``MetaData``: what the migrations' environment and the schema
checks compare the database against. Importing it registers every table module.
"""

from llmos.store import access, batches, datasets, evaluations, jobs, tables

metadata = tables.Base.metadata
TABLE_MODULES = (tables, datasets, jobs, evaluations, access, batches)

__all__ = ["TABLE_MODULES", "metadata"]
