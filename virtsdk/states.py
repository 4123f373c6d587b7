"""The state vocabulary of instances and migrations (transitions: docs/flows.md).

``vm_state`` is what the instance *is*; ``task_state`` is what is being done to it
(None when idle); ``power_state`` is what the hypervisor reports.  Migration records
carry a :class:`MigrationStatus`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class VMState(StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    RESIZED = "resized"
    ERROR = "error"
    DELETED = "deleted"


class TaskState(StrEnum):
    SPAWNING = "spawning"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    DELETING = "deleting"
    RESIZE_PREP = "resize_prep"
    RESIZE_MIGRATING = "resize_migrating"
    RESIZE_MIGRATED = "resize_migrated"
    RESIZE_FINISH = "resize_finish"
    RESIZE_REVERTING = "resize_reverting"
    RESIZE_CONFIRMING = "resize_confirming"
    MIGRATING = "migrating"


class PowerState(IntEnum):
    """Hypervisor power states, numbered as Nova numbers them."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class MigrationStatus(StrEnum):
    # cold migration / resize
    PRE_MIGRATING = "pre-migrating"
    MIGRATING = "migrating"
    POST_MIGRATING = "post-migrating"
    FINISHED = "finished"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    REVERTING = "reverting"
    REVERTED = "reverted"
    # live migration
    ACCEPTED = "accepted"
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    POSTCOPY = "running (post-copy)"
    COMPLETED = "completed"
    # failures
    FAILED = "failed"
    CANCELLED = "cancelled"
    ERROR = "error"


class MigrationType(StrEnum):
    RESIZE = "resize"
    MIGRATION = "migration"
    LIVE = "live-migration"


class SlotClaim(StrEnum):
    """The answer of ``Database.migration_claim_live_slot`` for a queued live migration."""

    #: both hosts had a free slot: the migration is now 'preparing'
    STARTED = "started"
    #: the source's outbound or the destination's inbound slots are all taken
    WAIT = "wait"
    #: the migration is no longer queued (cancelled while waiting, or recovered)
    SETTLED = "settled"
