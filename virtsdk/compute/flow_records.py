"""What every compute flow writes besides its own steps: notifications, a migration's
error status, disk-transfer progress and a failed flow's ending.

:class:`FlowRecords` is built once per compute manager with the host name, the
manager's (fenced) database and its notifier, and handed to each flow object
(:class:`~.cold_migration.ColdMigrationFlow`, :class:`~.confirm_revert.ConfirmRevertFlow`,
:class:`~.live_migration.LiveMigrationFlow`,
:class:`~.live_migration_dest.LiveMigrationDestination`) and to the manager itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from virtsdk import actions
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.notifications import Notifier, instance_payload
from virtsdk.objects import Instance, Migration, TransferProgress
from virtsdk.states import MigrationStatus, VMState

LOG = logging.getLogger(__name__)


def old_vm_state(instance: Instance) -> VMState:
    """The vm_state the instance had before its resize / cold migration began
    (kept in its system metadata by ``prep_resize``)."""
    return VMState(instance.system_metadata.get("old_vm_state", VMState.ACTIVE))


class FlowRecords:
    """Notifications and failure bookkeeping of one host's compute flows."""

    def __init__(self, host: str, db: Database, notifier: Notifier) -> None:
        self.host = host
        self.db = db
        self.notifier = notifier

    def notify(self, ctx: RequestContext, event: str, instance: Instance,
               **extra: Any) -> None:
        """Emit ``event`` with the instance's payload (and ``extra`` fields)."""
        self.notifier.info(ctx, event, instance_payload(instance, **extra))

    def mark_migration(self, migration: Migration | None, status: MigrationStatus,
                       exc: BaseException | None = None) -> None:
        """Set the migration's status (and error); never raises, so the original
        failure is what the caller reports."""
        if migration is None or migration.id is None:
            return
        values: dict[str, object] = {"status": status}
        if exc is not None:
            values["error"] = actions.describe(exc)
        try:
            self.db.migration_update(migration.id, values)
        except Exception:  # never hide the original failure
            LOG.exception("could not mark migration %s %s", migration.id, status)

    def fail_flow(self, ctx: RequestContext, instance: Instance, exc: BaseException,
                  restore: VMState, extra: dict[str, object] | None = None,
                  rollback: bool = False) -> None:
        """End a failed flow: optional field fixes, then error-out semantics
        (``rollback`` forces "restore ``restore``" whatever the error)."""
        LOG.warning("%s of %s failed on %s: %s", instance.task_state, instance.uuid,
                    self.host, actions.describe(exc))
        if extra:
            try:
                self.db.instance_update(instance.uuid, dict(extra))
            except Exception:
                LOG.exception("could not restore fields of %s", instance.uuid)
        actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
        actions.error_out_instance(self.db, instance.uuid, exc, restore, rollback)

    def transfer_progress(self, migration_id: int, stopped: threading.Event
                          ) -> Callable[[TransferProgress], None]:
        """The driver's disk-transfer callback: stores progress in the migration
        record, at most once per whole percent or half second (and always the last
        sample), however often the transport reports; nothing once ``stopped``.  A
        sample the database refuses (a server restarting) is logged and dropped: it
        never fails the transfer."""
        last = {"pct": -1, "at": 0.0}

        def record(sample: TransferProgress) -> None:
            if stopped.is_set() or sample.bytes_total <= 0:
                return
            done = min(sample.bytes_done, sample.bytes_total)
            pct = int(100 * done / sample.bytes_total)
            now = time.monotonic()
            if pct == last["pct"] and now - last["at"] < 0.5 and done < sample.bytes_total:
                return
            last["pct"], last["at"] = pct, now
            try:
                self.db.migration_record_progress(migration_id, {
                    "progress": pct,
                    "disk_total": sample.bytes_total, "disk_processed": done,
                    "disk_remaining": sample.bytes_total - done})
            except Exception as exc:  # noqa: BLE001 - a lost sample never stops the disks
                # e.g. the database restarting: the transfer goes on, the next sample
                # (and the migration's next state) is stored once it is back
                LOG.warning("progress of migration %s not stored: %s", migration_id,
                            actions.describe(exc))
        return record
