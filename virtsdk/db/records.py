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
