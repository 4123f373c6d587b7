"""SQLAlchemy 2 table models of the orchestration layer.

Only :mod:`virtsdk.db.api` touches these; everyone else works with the typed objects
of :mod:`virtsdk.objects` (``Instance``, ``Flavor``, ``Migration``) and the small
record dataclasses of :mod:`virtsdk.db.records`.  Nested objects (a flavor inside an
instance, an image) are stored as their JSON primitives so they round-trip exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: constraint and index names are fixed here, not left to each database, so a later
#: migration can name what it alters on SQLite and PostgreSQL alike
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """The tables' metadata.  The schema itself is made and upgraded only by the Alembic
    migrations in :mod:`virtsdk.db.migrations` (``virtsdk-manage db sync``); a test
    checks that they produce exactly these models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON}


class FlavorRow(Base):
    __tablename__ = "flavors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class InstanceRow(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vm_state: Mapped[str] = mapped_column(String(32))
    task_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    flavor: Mapped[dict[str, Any]] = mapped_column(JSON)
    old_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    new_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    image: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    system_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class MigrationRow(Base):
    """One migration; byte counters are 64-bit (a guest's memory passes 2 GiB)."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    migration_type: Mapped[str] = mapped_column(String(32))
    source_host: Mapped[str] = mapped_column(String(255))
    dest_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    old_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    new_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    memory_total: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_total: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ActionRow(Base):
    __tablename__ = "instance_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64), default="")
    project_id: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    start_time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ActionEventRow(Base):
    __tablename__ = "instance_action_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("instance_actions.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255), default="")
    start_time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str | None] = mapped_column(String(32), nullable=True)
    traceback: Mapped[str] = mapped_column(Text, default="")


class ServiceRow(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    binary: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(64))
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: why an operator disabled it (``virtsdk-manage service disable --reason``)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the virtsdk release the service runs (rolling upgrades show here)
    version: Mapped[str] = mapped_column(String(32), default="", server_default="")
    #: capacity the driver last reported (HostResources primitive) and service limits
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ClaimRow(Base):
    """Resources the scheduler claimed on a destination for a move (cold or live
    migration, resize) before any migration record names that host: at most one
    per instance (``consumer``).  Released when the instance's task ends; while a
    migration in progress names the host as destination, the migration counts
    instead (so nothing is counted twice)."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consumer: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class DrainRow(Base):
    """One drain of a host (the executor's record; one row per request)."""

    __tablename__ = "drains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    #: running | aborting | complete | incomplete
    status: Mapped[str] = mapped_column(String(32), index=True)
    live: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_cold: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the first plan (estimated seconds, moves), as shown by --dry-run
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class DrainGuestRow(Base):
    """One guest of a drain: where it went (or why it stayed) and its migrations."""

    __tablename__ = "drain_guests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    drain_id: Mapped[int] = mapped_column(ForeignKey("drains.id"), index=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    #: pending | migrating | done | failed | stuck | aborted
    status: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(8), default="live")
    dest_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    migration_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: every migration id tried, in order
    migration_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: destinations this guest failed on
    tried_hosts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    estimated_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    downtime_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
