"""Conversions between table rows and the typed objects (used by :mod:`virtsdk.db.api`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from typing import Any

from virtsdk.db.models import (
    ActionEventRow,
    ActionRow,
    DrainGuestRow,
    DrainRow,
    InstanceRow,
    MigrationRow,
    ServiceRow,
)
from virtsdk.db.records import ActionEvent, Drain, DrainGuest, InstanceAction, Service
from virtsdk.objects import Flavor, HostResources, ImageMeta, Instance, Migration, VirtObject
from virtsdk.states import MigrationStatus, MigrationType, PowerState, TaskState, VMState

_INSTANCE_OBJECT_FIELDS = {"flavor", "old_flavor", "new_flavor", "image"}
_MIGRATION_OBJECT_FIELDS = {"old_flavor", "new_flavor"}


def _prim(value: Any) -> Any:
    if isinstance(value, VirtObject):
        return value.to_primitive()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def flavor(prim: dict[str, Any] | None) -> Flavor | None:
    return None if prim is None else Flavor.from_primitive(prim)


def instance_values(values: dict[str, Any]) -> dict[str, Any]:
    """Instance field values -> column values (objects and enums to primitives)."""
    names = {f.name for f in dataclasses.fields(Instance)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names or key == "uuid":
            raise KeyError(f"instance has no updatable field {key!r}")
        column = "meta" if key == "metadata" else key
        out[column] = dict(value) if key in ("metadata", "system_metadata") else _prim(value)
    return out


def instance_columns(instance: Instance) -> dict[str, Any]:
    values = {f.name: getattr(instance, f.name) for f in dataclasses.fields(Instance)}
    values.pop("uuid")
    cols = instance_values(values)
    cols["uuid"] = instance.uuid
    return cols


def row_to_instance(row: InstanceRow) -> Instance:
    return Instance(
        name=row.name,
        flavor=Flavor.from_primitive(row.flavor),
        uuid=row.uuid,
        image=None if row.image is None else ImageMeta.from_primitive(row.image),
        host=row.host,
        node=row.node,
        vm_state=VMState(row.vm_state),
        task_state=None if row.task_state is None else TaskState(row.task_state),
        power_state=PowerState(row.power_state),
        old_flavor=flavor(row.old_flavor),
        new_flavor=flavor(row.new_flavor),
        metadata=dict(row.meta or {}),
        system_metadata=dict(row.system_metadata or {}),
    )


#: Migration fields kept in the row's free-form ``details`` JSON (no column of their
#: own, so a database created before them needs no schema change)
MIGRATION_DETAIL_FIELDS = ("downtime_steps",)


def migration_values(values: dict[str, Any]) -> dict[str, Any]:
    """Migration field values -> column values; fields of
    :data:`MIGRATION_DETAIL_FIELDS` go into ``details``."""
    names = {f.name for f in dataclasses.fields(Migration)} | {"details"}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names or key in ("id", "uuid", "created_at", "updated_at"):
            raise KeyError(f"migration has no updatable field {key!r}")
        if key in MIGRATION_DETAIL_FIELDS:
            out.setdefault("details", {})[key] = [int(v) for v in value]
        elif key == "details":
            out["details"] = {**dict(value or {}), **out.get("details", {})}
        else:
            out[key] = _prim(value)
    return out


def migration_columns(migration: Migration) -> dict[str, Any]:
    values = {f.name: getattr(migration, f.name) for f in dataclasses.fields(Migration)}
    for read_only in ("id", "created_at", "updated_at"):
        values.pop(read_only)
    uuid = values.pop("uuid")
    if not values["downtime_steps"]:
        values.pop("downtime_steps")  # nothing to keep: the details stay empty
    cols = migration_values(values)
    cols["uuid"] = uuid
    return cols


def row_to_migration(row: MigrationRow) -> Migration:
    return Migration(
        instance_uuid=row.instance_uuid,
        source_host=row.source_host,
        migration_type=MigrationType(row.migration_type),
        dest_host=row.dest_host,
        source_node=row.source_node,
        dest_node=row.dest_node,
        status=MigrationStatus(row.status),
        uuid=row.uuid,
        id=row.id,
        old_flavor=flavor(row.old_flavor),
        new_flavor=flavor(row.new_flavor),
        progress=row.progress,
        memory_total=row.memory_total,
        memory_processed=row.memory_processed,
        memory_remaining=row.memory_remaining,
        disk_total=row.disk_total,
        disk_processed=row.disk_processed,
        disk_remaining=row.disk_remaining,
        error=row.error,
        downtime_steps=[int(v) for v in (row.details or {}).get("downtime_steps", [])],
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def row_to_action(row: ActionRow, events: Sequence[ActionEventRow]) -> InstanceAction:
    return InstanceAction(
        id=row.id, instance_uuid=row.instance_uuid, action=row.action,
        request_id=row.request_id, user_id=row.user_id, project_id=row.project_id,
        start_time=row.start_time, finish_time=row.finish_time, message=row.message,
        events=[ActionEvent(event=e.event, host=e.host, start_time=e.start_time,
                            finish_time=e.finish_time, result=e.result,
                            traceback=e.traceback) for e in events],
    )


def row_to_service(row: ServiceRow) -> Service:
    return Service(
        host=row.host, binary=row.binary, topic=row.topic, updated_at=row.updated_at,
        report_count=row.report_count, disabled=row.disabled, forced_down=row.forced_down,
        resources=None if row.resources is None else HostResources.from_primitive(
            row.resources),
        capabilities=dict(row.capabilities or {}), limits=dict(row.limits or {}),
        disabled_reason=row.disabled_reason, version=row.version or "",
    )


def row_to_drain(row: DrainRow, guests: Sequence[DrainGuestRow]) -> Drain:
    return Drain(
        id=row.id, host=row.host, status=row.status, live=row.live,
        allow_cold=row.allow_cold, plan=dict(row.plan or {}), message=row.message,
        created_at=row.created_at, finished_at=row.finished_at,
        guests=[DrainGuest(
            instance_uuid=g.instance_uuid, name=g.name, status=g.status, mode=g.mode,
            dest_host=g.dest_host, migration_id=g.migration_id,
            migration_ids=[int(m) for m in g.migration_ids or []], attempts=g.attempts,
            tried_hosts=[str(h) for h in g.tried_hosts or []], estimated_s=g.estimated_s,
            downtime_ms=g.downtime_ms, error=g.error, started_at=g.started_at,
            finished_at=g.finished_at) for g in guests])
