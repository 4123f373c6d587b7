"""Schema management: Alembic migrations, run under a database-wide lock.

Who calls it: ``virtsdk-manage db sync`` / ``db version`` on a deployment, and
:class:`~virtsdk.cloud.EmbeddedCloud` when it starts.  :func:`db_sync` is idempotent and
safe when several processes run it at once against one database: they queue on a lock
(a PostgreSQL advisory lock, MySQL ``GET_LOCK``, or for SQLite an oslo.concurrency file
lock next to the database file), so one upgrades and the others find the schema current.
A database made before migrations existed (every table there, no version) is stamped at
the baseline revision first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from oslo_concurrency import lockutils

from virtsdk.exceptions import VirtSDKError

BASELINE = "0001_baseline"
#: The tables ``create_all`` made before migrations existed (revision BASELINE).
BASELINE_TABLES = frozenset({"flavors", "instance_actions", "instance_action_events",
                             "instances", "migrations", "services"})
#: the advisory-lock key (PostgreSQL) / lock name (MySQL) that serialises db sync
LOCK_KEY = 0x7669727473646B  # "virtsdk"
LOCK_NAME = "virtsdk-db-sync"


class SchemaNotCurrent(VirtSDKError):
    """The database's schema is older (or newer) than this code's: run
    ``virtsdk-manage db sync`` with the newest code first."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "virtsdk.db:migrations")
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def _engine(url: str | sa.Engine) -> tuple[sa.Engine, bool]:
    if isinstance(url, sa.Engine):
        return url, False
    return sa.create_engine(url, poolclass=sa.pool.NullPool), True


@contextlib.contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection holding the database-wide sync lock until the block ends."""
    name = engine.dialect.name
    if name == "sqlite":
        path = engine.url.database or ""
        lock_dir = os.path.dirname(os.path.abspath(path)) if path and path != ":memory:" \
            else None
        guard = (lockutils.lock(f"{LOCK_NAME}-{os.path.basename(path)}", external=True,
                                lock_path=lock_dir) if lock_dir else contextlib.nullcontext())
        with guard, engine.connect() as conn:
            yield conn
        return
    with engine.connect() as conn:
        if name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            unlock = sa.text("SELECT pg_advisory_unlock(:k)")
        elif name in ("mysql", "mariadb"):
            conn.execute(sa.text("SELECT GET_LOCK(:k, -1)"), {"k": LOCK_NAME})
            unlock = sa.text("SELECT RELEASE_LOCK(:k)")
        else:  # pragma: no cover - no other database is supported
            raise VirtSDKError(f"database {name!r} is not supported")
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(unlock, {"k": LOCK_KEY if name == "postgresql" else LOCK_NAME})
            conn.commit()


def _current(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _run(conn: sa.Connection, fn: str, revision: str) -> None:
    cfg = _config()
    cfg.attributes["connection"] = conn
    getattr(command, fn)(cfg, revision)
    conn.commit()


def db_sync(url: str | sa.Engine, revision: str = "head") -> str:
    """Upgrade the schema to ``revision`` (default: the newest); returns the revision
    the database is at afterwards.  Idempotent; see the module docstring for locking."""
    engine, own = _engine(url)
    try:
        with _locked(engine) as conn:
            if _current(conn) is None:
                tables = set(sa.inspect(conn).get_table_names())
                if tables and BASELINE_TABLES <= tables:  # made by create_all
                    _run(conn, "stamp", BASELINE)
            _run(conn, "upgrade", revision)
            current = _current(conn)
    finally:
        if own:
            engine.dispose()
    assert current is not None
    return current


def db_version(url: str | sa.Engine) -> str | None:
    """The revision the database is at (``None``: never synced)."""
    engine, own = _engine(url)
    try:
        with engine.connect() as conn:
            return _current(conn)
    finally:
        if own:
            engine.dispose()


def check_current(url: str | sa.Engine) -> None:
    """Raise :class:`SchemaNotCurrent` unless the database is at this code's head
    (for services that must not start on an old schema)."""
    current, newest = db_version(url), head()
    if current != newest:
        raise SchemaNotCurrent(
            f"database schema is at {current or 'nothing'}, this code needs {newest}: "
            f"run 'virtsdk-manage db sync'")
