"""Schema through Alembic: the migrations make exactly the models' schema on SQLite and
PostgreSQL, ``db sync`` is idempotent and safe from several processes at once, and a
database at the baseline upgrades with its rows intact."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from virtsdk.db import migration
from virtsdk.db.models import Base, MigrationRow

FIVE_GIB = 5 * 1024**3


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/virtsdk.sqlite"
    return request.getfixturevalue("postgres_url")


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), Base.metadata))
    finally:
        engine.dispose()


def test_migrations_make_exactly_the_models(url):
    assert migration.db_version(url) is None
    assert migration.db_sync(url) == migration.head()
    assert _diff(url) == []
    assert migration.db_sync(url) == migration.head()  # idempotent
    migration.check_current(url)


def test_upgrade_from_baseline_keeps_rows_and_widens_byte_counts(url):
    assert migration.db_sync(url, migration.BASELINE) == migration.BASELINE
    with pytest.raises(migration.SchemaNotCurrent, match="virtsdk-manage db sync"):
        migration.check_current(url)
    engine = sa.create_engine(url)
    now = sa.func.now()
    row = dict(uuid="m-1", instance_uuid="i-1", migration_type="live", source_host="a",
               status="running", progress=5, memory_total=2**31 - 1, memory_processed=0,
               memory_remaining=0, disk_total=0, disk_processed=0, disk_remaining=0,
               error="", details={}, created_at=now, updated_at=now)
    with engine.begin() as conn:
        conn.execute(sa.insert(MigrationRow.__table__).values(**row))
    assert migration.db_sync(url) == migration.head()
    assert _diff(url) == []
    with engine.begin() as conn:
        table = MigrationRow.__table__
        assert conn.execute(sa.select(table.c.memory_total)).scalar() == 2**31 - 1
        conn.execute(sa.update(table).values(memory_total=FIVE_GIB, disk_total=FIVE_GIB))
        assert conn.execute(sa.select(table.c.memory_total)).scalar() == FIVE_GIB
    engine.dispose()


def test_four_processes_sync_one_empty_database_at_once(url, tmp_path):
    config = tmp_path / "virtsdk.conf"
    config.write_text(f"[database]\nconnection = {url}\n")
    cmd = [sys.executable, "-m", "virtsdk.cli.manage", "--config-file", str(config),
           "db", "sync"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 4, results
    assert all(f"database schema at {migration.head()}" in r[1] for r in results), results
    assert _diff(url) == []
    version = subprocess.run(
        [sys.executable, "-m", "virtsdk.cli.manage", "--config-file", str(config), "db",
         "version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == migration.head()


def test_a_database_made_before_migrations_is_stamped_then_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path}/legacy.sqlite"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # what create_all made before: every table, no version
        cfg = migration._config()  # noqa: SLF001
        cfg.attributes["connection"] = conn
        from alembic import command
        command.upgrade(cfg, migration.BASELINE)
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()
    assert migration.db_version(url) is None
    assert migration.db_sync(url) == migration.head()
    assert _diff(url) == []


def test_manage_reports_an_unreachable_database_in_one_line(tmp_path):
    config = tmp_path / "virtsdk.conf"
    config.write_text("[database]\nconnection = postgresql+psycopg://u:p@127.0.0.1:1/x\n")
    out = subprocess.run(
        [sys.executable, "-m", "virtsdk.cli.manage", "--config-file", str(config), "db",
         "version"], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("error: database:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
