"""Alembic's environment: migrations run on the connection ``llmos.store.migrate`` passes in."""

from alembic import context

from llmos.store.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite can't ALTER most things: batch mode copies the table instead
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
