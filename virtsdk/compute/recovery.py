"""Recovery, at service start, of what a crash of this host's compute service cut off.

Called once by :meth:`ComputeManager._start`, before this host serves RPC (so it never
calls itself over RPC).  Every migration in progress that involves this host is
matched against :data:`RULES`, one row per (flow, migration status, which host
restarted): the first row that matches says what to do.  The table is the whole
policy; each row has a test (``tests/orchestration/test_recovery_rules.py``).

Instances of this host left with a task but no migration in progress get their task
cleared (a build that was interrupted ends in ERROR).  They are collected *before*
any migration is recovered, so a flow that recovery itself restarts is never taken
for an orphan task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from virtsdk import actions, network
from virtsdk.compute.cold_migration import ColdMigrationFlow
from virtsdk.compute.confirm_revert import ConfirmRevertFlow
from virtsdk.compute.live_migration import LiveMigrationFlow
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import IN_PROGRESS, Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import Conflict, InstanceNotFound, MigrationError, RollbackError
from virtsdk.objects import Instance, LiveMigrateData, Migration
from virtsdk.states import MigrationStatus, MigrationType, PowerState, TaskState, VMState

LOG = logging.getLogger(__name__)

Status = MigrationStatus
_ALIVE = (PowerState.RUNNING, PowerState.PAUSED)



SOURCE, DEST = "source", "destination"
COLD, LIVE = "cold", "live"


@dataclass(frozen=True)
class RecoveryRule:
    """One row of the recovery table."""

    flow: str                          #: COLD (resize / migration) or LIVE
    statuses: tuple[MigrationStatus, ...]
    restarted: str                     #: SOURCE or DEST: the host whose service restarted
    action: str                        #: name of the Recovery method that runs
    what: str                          #: what it does, for operators and the docs


RULES: tuple[RecoveryRule, ...] = (
    RecoveryRule(COLD, (Status.PRE_MIGRATING, Status.MIGRATING), SOURCE, "_recover_cold_source",
                 "source copy authoritative: clean destination, restore here, migration error"),
    RecoveryRule(COLD, (Status.PRE_MIGRATING,), DEST, "_recover_cold_dest_prep",
                 "crashed in prep_resize: undo the target here, instance restored on source"),
    RecoveryRule(COLD, (Status.MIGRATING,), DEST, "_recover_nothing",
                 "the source is sending: it notices the failure and restores itself"),
    RecoveryRule(COLD, (Status.POST_MIGRATING,), SOURCE, "_recover_cold_source_post",
                 "disks sent, finish_resize maybe never cast (task resize_migrated, or still "
                 "resize_migrating after a crash between the two writes): unless the "
                 "destination already took the instance, clean it and restore here"),
    RecoveryRule(COLD, (Status.POST_MIGRATING,), DEST, "_recover_cold_dest_finish",
                 "crashed in finish_resize: clean here, the source restores its kept copy"),
    RecoveryRule(COLD, (Status.FINISHED,), SOURCE, "_recover_nothing",
                 "resized, waiting for confirm or revert: nothing was running"),
    RecoveryRule(COLD, (Status.FINISHED,), DEST, "_recover_cold_dest_finished",
                 "resized, waiting for confirm or revert; after a crash in finish_resize "
                 "between 'finished' and the instance's write (task still resize_finish): "
                 "store it resized here"),
    RecoveryRule(COLD, (Status.CONFIRMING,), SOURCE, "_recover_confirm",
                 "redo confirm_resize (confirm_migration is idempotent)"),
    RecoveryRule(COLD, (Status.CONFIRMING,), DEST, "_recover_nothing",
                 "confirm runs on the source only"),
    RecoveryRule(COLD, (Status.REVERTING,), DEST, "_recover_revert_dest",
                 "instance still on the destination: redo revert_resize"),
    RecoveryRule(COLD, (Status.REVERTING,), SOURCE, "_recover_revert_source",
                 "instance already moved back (crash in finish_revert_resize): redo "
                 "finish_revert_resize here"),
    RecoveryRule(LIVE, (Status.ACCEPTED, Status.QUEUED), SOURCE, "_recover_live_unstarted",
                 "nothing moved yet: migration failed, instance active here"),
    RecoveryRule(LIVE, (Status.PREPARING, Status.RUNNING, Status.POSTCOPY), SOURCE,
                 "_recover_live",
                 "ask both hosts where the guest runs: roll back to here, or finish there"),
    RecoveryRule(LIVE, (Status.ACCEPTED, Status.QUEUED), DEST, "_recover_nothing",
                 "the destination holds nothing before pre_live_migration"),
    RecoveryRule(LIVE, (Status.PREPARING,), DEST, "_recover_live_dest_placeholder",
                 "crashed in pre_live_migration: remove the placeholder here; the source "
                 "rolls back when its call fails"),
    RecoveryRule(LIVE, (Status.RUNNING, Status.POSTCOPY), DEST, "_recover_nothing",
                 "the source runs the job and settles it (its rollback cleans here)"),
)


def find_rule(m: Migration, host: str) -> RecoveryRule | None:
    """The row of :data:`RULES` for migration ``m`` seen from restarted ``host``.
    A same-host resize is recovered as the source (its kept copy is here)."""
    flow = LIVE if m.migration_type == MigrationType.LIVE else COLD
    restarted = SOURCE if m.source_host == host else DEST
    for rule in RULES:
        if rule.flow == flow and rule.restarted == restarted and m.status in rule.statuses:
            return rule
    return None


class Recovery:
    """Start-up recovery of one compute host (see the module docstring).  Built by
    the manager with its (fenced) database, driver and RPC client, and the flow
    objects whose steps recovery runs again: ``terminate`` (the manager's
    ``terminate_instance``), the cold-migration, confirm/revert and live-migration
    flows."""

    def __init__(self, host: str, db: Database, driver: ComputeDriver,
                 compute_rpc: ComputeAPI, *,
                 terminate: Callable[[RequestContext, Instance], None],
                 cold: ColdMigrationFlow, confirm_revert: ConfirmRevertFlow,
                 live: LiveMigrationFlow) -> None:
        self.host = host
        self.db = db
        self.driver = driver
        self.compute_rpc = compute_rpc
        self.terminate = terminate
        self.cold = cold
        self.confirm_revert = confirm_revert
        self.live = live

    def recover_interrupted(self, ctx: RequestContext) -> None:
        orphans = []
        for instance in self.db.instance_get_all(host=self.host):
            if instance.task_state is None:
                continue
            busy = self.db.migration_get_all(instance_uuid=instance.uuid,
                                             statuses=IN_PROGRESS)
            if not busy:
                orphans.append(instance)
        for migration in self.db.migration_get_all(host=self.host, statuses=IN_PROGRESS):
            try:
                self._recover_migration(ctx, migration)
            except Exception:  # noqa: BLE001 - one bad record must not stop the rest
                LOG.exception("recovery of migration %s failed", migration.id)
        for instance in orphans:
            try:
                self._recover_instance(ctx, instance)
            except Exception:  # noqa: BLE001
                LOG.exception("recovery of instance %s failed", instance.uuid)

    def _recover_instance(self, ctx: RequestContext, instance: Instance) -> None:
        LOG.warning("recovery: clearing task %s of %s", instance.task_state, instance.uuid)
        vm_state = VMState.ERROR if instance.task_state == TaskState.SPAWNING else \
            instance.vm_state
        if instance.task_state == TaskState.DELETING:
            self.terminate(ctx, instance)
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
        rule = find_rule(m, self.host)
        LOG.warning("recovery on %s: %s migration %s of %s was %s: %s", self.host,
                    m.migration_type, m.id, m.instance_uuid, m.status,
                    rule.what if rule else "no rule")
        if rule is not None:
            getattr(self, rule.action)(ctx, instance, m)

    def _recover_nothing(self, ctx: RequestContext, instance: Instance,
                         m: Migration) -> None:
        """The other host owns this step."""

    def _interrupted(self) -> str:
        return f"interrupted by a restart of {self.host}"

    def _settle(self, m: Migration, status: MigrationStatus, why: str) -> bool:
        """Final status for an interrupted migration; False if someone else already
        moved it on (then they own it)."""
        try:
            self.db.migration_update(int(m.id or 0), {"status": status, "error": why},
                                     expected_status=m.status)
            return True
        except Conflict:
            return False

    # -- cold -----------------------------------------------------------------------------

    def _recover_cold_dest_prep(self, ctx: RequestContext, instance: Instance,
                                m: Migration) -> None:
        if not self._settle(m, Status.ERROR, "destination restarted during prep_resize"):
            return
        self.cold.abort_target(ctx, instance, None)
        self.db.action_finish_open(instance.uuid, self._interrupted())
        actions.error_out_instance(self.db, instance.uuid, MigrationError(),
                                   instance.vm_state, rollback=True)

    def _recover_cold_dest_finish(self, ctx: RequestContext, instance: Instance,
                                  m: Migration) -> None:
        if instance.task_state not in (TaskState.RESIZE_MIGRATED, TaskState.RESIZE_FINISH):
            return
        self.cold.finish_resize_failed(
            ctx, instance, m, None,
            RollbackError("destination restarted during finish_resize; the "
                          "source copy was restored"))

    def _recover_cold_dest_finished(self, ctx: RequestContext, instance: Instance,
                                    m: Migration) -> None:
        # finish_resize stores the migration 'finished' and then, in a second write,
        # the instance resized with no task: a crash between the two leaves the task
        # resize_finish with the guest built here; complete the second write
        if instance.host != self.host or instance.task_state != TaskState.RESIZE_FINISH:
            return
        power = self._power_here(instance)
        try:
            self.db.instance_update(instance.uuid, {
                "vm_state": VMState.RESIZED, "task_state": None,
                "power_state": power if power is not None else PowerState.NOSTATE},
                expected_task_state=TaskState.RESIZE_FINISH)
        except Conflict:
            return
        self.db.action_finish_open(instance.uuid, f"resized; its last write was completed "
                                                  f"after a restart of {self.host}")

    def _recover_cold_source_post(self, ctx: RequestContext, instance: Instance,
                                  m: Migration) -> None:
        # take the flow from finish_resize, unless it already started there (the
        # destination moved the task on to resize_finish).  The source stores
        # 'post-migrating' before the task 'resize_migrated': a crash between the two
        # leaves 'resize_migrating', and finish_resize was never cast then.
        try:
            instance = self.db.instance_update(
                instance.uuid, {"task_state": TaskState.RESIZE_REVERTING},
                expected_task_state=(TaskState.RESIZE_MIGRATING, TaskState.RESIZE_MIGRATED))
        except Conflict:
            return
        self._recover_cold_source(ctx, instance, m)

    def _recover_confirm(self, ctx: RequestContext, instance: Instance,
                         m: Migration) -> None:
        self.confirm_revert.confirm_resize(ctx, instance, m)

    def _recover_revert_dest(self, ctx: RequestContext, instance: Instance,
                             m: Migration) -> None:
        if instance.host == self.host:
            self.confirm_revert.revert_resize(ctx, instance, m)

    def _recover_revert_source(self, ctx: RequestContext, instance: Instance,
                               m: Migration) -> None:
        if instance.host == self.host:
            self.confirm_revert.finish_revert_resize(ctx, instance, m)

    def _recover_cold_source(self, ctx: RequestContext, instance: Instance,
                             m: Migration) -> None:
        if instance.host != self.host:
            return
        if not self._settle(m, Status.ERROR, self._interrupted()):
            return
        if m.dest_host and m.dest_host != self.host:
            try:
                self.compute_rpc.abort_resize_target(ctx, m.dest_host, instance, m, None,
                                                     destroy=True)
            except Exception:  # the destination may be down too
                LOG.exception("recovery: could not clean %s on %s", instance.uuid,
                              m.dest_host)
        else:
            self.cold.abort_target(ctx, instance, None)
        old = VMState(instance.system_metadata.get("old_vm_state", instance.vm_state))
        final = old
        if self._power_here(instance) not in _ALIVE:  # powered off for the transfer
            try:
                self.driver.finish_revert_migration(
                    ctx, m, instance, network.network_info(instance),
                    power_on=old == VMState.ACTIVE)
            except Exception:
                LOG.exception("recovery: could not restore %s here", instance.uuid)
                final = VMState.ERROR
        self.db.instance_update(instance.uuid, {
            "host": self.host, "node": m.source_node, "flavor": m.old_flavor or
            instance.flavor, "old_flavor": None, "new_flavor": None, "vm_state": final,
            "task_state": None, "power_state": PowerState.RUNNING
            if old == VMState.ACTIVE else PowerState.SHUTDOWN})
        self.db.action_finish_open(instance.uuid, self._interrupted())

    # -- live -----------------------------------------------------------------------------

    def _power_here(self, instance: Instance) -> PowerState | None:
        try:
            return self.driver.get_info(instance).state
        except InstanceNotFound:
            return None

    def _recover_live_unstarted(self, ctx: RequestContext, instance: Instance,
                                m: Migration) -> None:
        if self._settle(m, Status.FAILED, self._interrupted()):
            self.db.instance_update(instance.uuid, {"task_state": None,
                                                    "vm_state": VMState.ACTIVE})
            self.db.action_finish_open(instance.uuid, self._interrupted())

    def _recover_live_dest_placeholder(self, ctx: RequestContext, instance: Instance,
                                       m: Migration) -> None:
        if instance.host == self.host:
            return
        try:
            self.driver.rollback_live_migration_at_destination(
                ctx, instance, network.network_info(instance), True, None)
        except Exception:  # noqa: BLE001 - nothing was there
            LOG.info("recovery: no live placeholder of %s on %s", instance.uuid, self.host)

    def _recover_live(self, ctx: RequestContext, instance: Instance, m: Migration) -> None:
        dest = str(m.dest_host or "")
        if not dest:
            self._recover_live_unstarted(ctx, instance, m)
            return
        here = self._power_here(instance)
        there: int | None = None
        unreachable = False
        try:
            there = self.compute_rpc.instance_power_state(ctx, dest, instance)
        except Exception:  # destination down: judge from here
            LOG.exception("recovery: cannot ask %s about %s", dest, instance.uuid)
            unreachable = True
        data = LiveMigrateData(is_shared_block_storage=False)
        if here in _ALIVE:
            try:
                self.driver.live_migration_abort(instance)
            except Exception:  # usually: no job left to abort
                LOG.info("recovery: no live migration of %s to abort", instance.uuid,
                         exc_info=True)
            # settle first: a pre_live_migration still running on the destination
            # sees the migration is over and removes its own placeholder; one that
            # already returned is cleaned by the rollback below
            why = f"interrupted by a restart of {self.host}; guest kept on source"
            self._settle(m, Status.FAILED, why)
            failed = self.live.rollback(ctx, instance, dest, data, m)
            if failed:
                self.db.migration_update(int(m.id or 0), {
                    "status": Status.ERROR, "error": f"{why}; rollback: {failed}"})
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
            self._settle(m, Status.ERROR, f"guest not running here and {dest} could not "
                         "be asked; virtsdk audit finds where it runs" if unreachable
                         else "guest found running on neither host")
            self.db.instance_update(instance.uuid, {"task_state": None,
                                                    "vm_state": VMState.ERROR})
        self.db.action_finish_open(instance.uuid, f"interrupted by a restart of {self.host}")
