"""Plain records the database returns besides the shared objects.

Instances, flavors and migrations come back as :mod:`virtsdk.objects` dataclasses;
instance actions, their events and compute services are only orchestration
bookkeeping, so they are small read-only dataclasses defined here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from virtsdk.objects import HostResources


@dataclass(frozen=True)
class ActionEvent:
    """One step of an instance action (``compute_prep_resize`` ...), on one host."""

    event: str
    host: str
    start_time: dt.datetime
    finish_time: dt.datetime | None
    result: str | None
    traceback: str = ""


@dataclass(frozen=True)
class InstanceAction:
    """A user request on an instance (``resize``, ``live-migration`` ...) and its events."""

    id: int
    instance_uuid: str
    action: str
    request_id: str
    user_id: str
    project_id: str
    start_time: dt.datetime
    finish_time: dt.datetime | None
    message: str = ""
    events: list[ActionEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Service:
    """A compute (or conductor) service as last reported by its heartbeat."""

    host: str
    binary: str
    topic: str
    updated_at: dt.datetime
    report_count: int
    disabled: bool
    forced_down: bool
    resources: HostResources | None
    capabilities: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    disabled_reason: str | None = None
    version: str = ""

    def is_up(self, down_time_s: float, now: dt.datetime) -> bool:
        """True if the service heartbeat is younger than ``down_time_s`` and it is not
        forced down."""
        if self.forced_down:
            return False
        return (now - self.updated_at).total_seconds() < down_time_s


@dataclass(frozen=True)
class HostUsage:
    """What instances and in-progress migrations claim on a host."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0


@dataclass(frozen=True)
class DrainGuest:
    """One guest of a drain (see :class:`Drain`)."""

    instance_uuid: str
    name: str
    #: pending | migrating | done | failed | stuck | aborted
    status: str
    mode: str
    dest_host: str | None
    migration_id: int | None
    migration_ids: list[int]
    attempts: int
    tried_hosts: list[str]
    estimated_s: float | None
    downtime_ms: int | None
    error: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def seconds(self) -> float | None:
        """Measured time from the start of its last migration to its end."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Drain:
    """A drain of a host: its status (running, aborting, complete, incomplete), the
    first plan, and each guest."""

    id: int
    host: str
    status: str
    live: bool
    allow_cold: bool
    plan: dict[str, Any]
    message: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    guests: list[DrainGuest] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "incomplete")
