"""Recovery, at service start, of what a crash of this host's compute service cut off.

Called once by :meth:`ComputeManager._start`, before this host serves RPC (so it never
calls itself over RPC).  For every migration in progress that involves this host:

* cold, this host the source, still 'pre-migrating' / 'migrating' (the kept source
  copy is authoritative): clean the destination, restore the instance here with
  ``finish_revert_migration``, migration 'error';
* cold, this host the destination, crashed in ``prep_resize`` ('pre-migrating') or in
  ``finish_resize`` ('post-migrating'): clean here and have the source restore it;
* cold 'confirming' / 'reverting': redo the step (the driver steps are idempotent);
* live, this host the source: ask both drivers where the guest really runs.  Still
  here: cancel any job, roll back both sides, migration 'failed'.  Running on the
  destination: finish the destination side, instance there, migration 'error'.

Instances of this host left with a task but no migration in progress get their task
cleared (a build that was interrupted ends in ERROR).
"""

from __future__ import annotations

import logging

from virtsdk import actions, network
from virtsdk.compute.base import ManagerBase
from virtsdk.context import RequestContext
from virtsdk.db.api import IN_PROGRESS
from virtsdk.exceptions import Conflict, InstanceNotFound, MigrationError, RollbackError
from virtsdk.objects import Instance, LiveMigrateData, Migration
from virtsdk.states import MigrationStatus, MigrationType, PowerState, TaskState, VMState

LOG = logging.getLogger(__name__)

Status = MigrationStatus
_ALIVE = (PowerState.RUNNING, PowerState.PAUSED)


class RecoveryMixin(ManagerBase):
    """Start-up recovery of the compute manager (see the module docstring)."""

    def _recover_interrupted(self, ctx: RequestContext) -> None:
        for migration in self.db.migration_get_all(host=self.host, statuses=IN_PROGRESS):
            try:
                self._recover_migration(ctx, migration)
            except Exception:  # one bad record must not stop the rest
                LOG.exception("recovery of migration %s failed", migration.id)
        for instance in self.db.instance_get_all(host=self.host):
            if instance.task_state is None:
                continue
            busy = self.db.migration_get_all(instance_uuid=instance.uuid,
                                             statuses=IN_PROGRESS)
            if not busy:
                self._recover_instance(ctx, instance)

    def _recover_instance(self, ctx: RequestContext, instance: Instance) -> None:
        LOG.warning("recovery: clearing task %s of %s", instance.task_state, instance.uuid)
        vm_state = VMState.ERROR if instance.task_state == TaskState.SPAWNING else \
            instance.vm_state
        if instance.task_state == TaskState.DELETING:
            self.terminate_instance(ctx, instance)  # type: ignore[attr-defined]
            return
        self.db.action_finish_open(instance.uuid, f"interrupted by a restart of {self.host}")
        self.db.instance_update(instance.uuid, {"task_state": None, "vm_state": vm_state},
                                expected_task_state=instance.task_state)

    def _recover_migration(self, ctx: RequestContext, m: Migration) -> None:
        try:
            instance = self.db.instance_get(m.instance_uuid)
        except InstanceNotFound:
            self.db.migration_update(int(m.id or 0), {"status": Status.ERROR,
                                                      "error": "instance deleted"})
            return
        LOG.warning("recovery on %s: %s migration %s of %s was %s", self.host,
                    m.migration_type, m.id, m.instance_uuid, m.status)
        if m.migration_type == MigrationType.LIVE:
            if m.source_host == self.host:
                self._recover_live(ctx, instance, m)
            return
        source, dest = m.source_host == self.host, m.dest_host == self.host
        if source and m.status in (Status.PRE_MIGRATING, Status.MIGRATING) \
                and instance.host == self.host:
            self._recover_cold_source(ctx, instance, m)
        elif dest and m.status == Status.PRE_MIGRATING:
            self._settle(m, Status.ERROR, "destination restarted during prep_resize")
            self._abort_target(ctx, instance, None)  # type: ignore[attr-defined]
            self.db.action_finish_open(instance.uuid,
                                       f"interrupted by a restart of {self.host}")
            actions.error_out_instance(self.db, instance.uuid, MigrationError(),
                                     instance.vm_state, rollback=True)
        elif dest and m.status == Status.POST_MIGRATING and instance.task_state in (
                TaskState.RESIZE_MIGRATED, TaskState.RESIZE_FINISH):
            self._finish_resize_failed(  # type: ignore[attr-defined]
                ctx, instance, m, None,
                RollbackError("destination restarted during finish_resize; the "
                              "source copy was restored"))
        elif source and m.status == Status.CONFIRMING:
            self.confirm_resize(ctx, instance, m)  # type: ignore[attr-defined]
        elif dest and m.status == Status.REVERTING and instance.host == self.host:
            self.revert_resize(ctx, instance, m)  # type: ignore[attr-defined]

    def _settle(self, m: Migration, status: MigrationStatus, why: str) -> bool:
        """Final status for an interrupted migration; False if someone else already
        moved it on (then they own it)."""
        try:
            self.db.migration_update(int(m.id or 0), {"status": status, "error": why},
                                     expected_status=m.status)
            return True
        except Conflict:
            return False

    def _recover_cold_source(self, ctx: RequestContext, instance: Instance,
                             m: Migration) -> None:
        if not self._settle(m, Status.ERROR, f"interrupted by a restart of {self.host}"):
            return
        if m.dest_host and m.dest_host != self.host:
            try:
                self.compute_rpc.abort_resize_target(ctx, m.dest_host, instance, m, None,
                                                     destroy=True)
            except Exception:  # the destination may be down too
                LOG.exception("recovery: could not clean %s on %s", instance.uuid,
                              m.dest_host)
        else:
            self._abort_target(ctx, instance, None)  # type: ignore[attr-defined]
        old = VMState(instance.system_metadata.get("old_vm_state", instance.vm_state))
        final = old
        try:
            self.driver.finish_revert_migration(ctx, instance, network.network_info(instance),
                                                m, power_on=old == VMState.ACTIVE)
        except Exception:
            LOG.exception("recovery: could not restore %s here", instance.uuid)
            final = VMState.ERROR
        self.db.instance_update(instance.uuid, {
            "host": self.host, "node": m.source_node, "flavor": m.old_flavor or
            instance.flavor, "old_flavor": None, "new_flavor": None, "vm_state": final,
            "task_state": None, "power_state": PowerState.RUNNING
            if old == VMState.ACTIVE else PowerState.SHUTDOWN})
        self.db.action_finish_open(instance.uuid, f"interrupted by a restart of {self.host}")

    def _power_here(self, instance: Instance) -> PowerState | None:
        try:
            return self.driver.get_info(instance).state
        except InstanceNotFound:
            return None

    def _recover_live(self, ctx: RequestContext, instance: Instance, m: Migration) -> None:
        dest = str(m.dest_host or "")
        if m.status in (Status.ACCEPTED, Status.QUEUED) or not dest:
            if self._settle(m, Status.FAILED, f"interrupted by a restart of {self.host}"):
                self.db.instance_update(instance.uuid, {"task_state": None,
                                                        "vm_state": VMState.ACTIVE})
            return
        here = self._power_here(instance)
        there: int | None = None
        try:
            there = self.compute_rpc.instance_power_state(ctx, dest, instance)
        except Exception:  # destination down: judge from here
            LOG.exception("recovery: cannot ask %s about %s", dest, instance.uuid)
        data = LiveMigrateData(is_shared_block_storage=False)
        if here in _ALIVE:
            try:
                self.driver.live_migration_abort(instance)
            except Exception:  # usually: no job left to abort
                LOG.info("recovery: no live migration of %s to abort", instance.uuid,
                         exc_info=True)
            failed = self._rollback_live(ctx, instance, dest, data, m)  # type: ignore[attr-defined]
            self._settle(m, Status.ERROR if failed else Status.FAILED,
                         f"interrupted by a restart of {self.host}; guest kept on source")
            self.db.instance_update(instance.uuid, {
                "host": self.host, "node": self.host, "task_state": None,
                "vm_state": VMState.ERROR if failed else VMState.ACTIVE})
        elif there is not None and PowerState(there) in _ALIVE:
            final = VMState.ACTIVE
            try:
                self.compute_rpc.post_live_migration_at_destination(ctx, dest, instance,
                                                                    True, m)
                self.driver.post_live_migration_at_source(ctx, instance,
                                                          network.network_info(instance))
            except Exception:
                LOG.exception("recovery: finishing %s on %s failed", instance.uuid, dest)
                final = VMState.ERROR
            self._settle(m, Status.ERROR, f"interrupted by a restart of {self.host}; "
                                          f"the guest had reached {dest}")
            self.db.instance_update(instance.uuid, {"host": dest, "node": dest,
                                                    "task_state": None, "vm_state": final})
        else:
            self._settle(m, Status.ERROR, "guest found running on neither host")
            self.db.instance_update(instance.uuid, {"task_state": None,
                                                    "vm_state": VMState.ERROR})
        self.db.action_finish_open(instance.uuid, f"interrupted by a restart of {self.host}")
