"""Alembic environment: runs on the connection :mod:`virtsdk.db.migration` hands over.

:func:`virtsdk.db.migration.db_sync` takes the database-wide lock, opens the connection
and passes it in ``config.attributes["connection"]``; nothing here reads an ini file.
"""

from __future__ import annotations

from alembic import context

from virtsdk.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by table copy
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
