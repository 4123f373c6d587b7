"""Alembic migrations of the orchestration schema (run by :mod:`virtsdk.db.migration`)."""
