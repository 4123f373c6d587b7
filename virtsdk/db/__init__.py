"""Persistence of the orchestration layer (SQLAlchemy 2; SQLite by default).

Use :class:`virtsdk.db.api.Database`; the table models stay private to this package.
"""

from virtsdk.db.api import ANY, Database

__all__ = ["ANY", "Database"]
