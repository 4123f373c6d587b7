"""The public Python API of an embedding cloud: instances, flavors, migrations.

Who calls it: the embedding application (and ``virtsdk demo``), in any thread, with
a :class:`~virtsdk.context.RequestContext`.  Every method validates its input and the
instance's state *before* anything moves and raises a clear
:class:`~virtsdk.exceptions.VirtSDKError`: unknown instance / flavor / host,
resizing to the same flavor, shrinking disks, a state that forbids the action (the
error names it), or another task already running (:class:`~virtsdk.exceptions.Conflict`:
the task-state transition is a guarded database update, so of two concurrent
requests on one instance exactly one proceeds).  Long operations return once they
were accepted; :meth:`API.wait` waits until an instance's task is over.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import oslo_messaging
from oslo_config import cfg

from virtsdk import actions, network
from virtsdk.api import fields
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.conductor.rpcapi import ConductorAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.db.records import Drain, InstanceAction, Service
from virtsdk.drain.executor import Drainer, set_host_disabled
from virtsdk.drain.plan import Plan
from virtsdk.exceptions import (
    Conflict,
    InstanceInvalidState,
    Invalid,
    MigrationNotFound,
    MigrationTimeout,
    NotSupported,
    ResizeShrinkNotAllowed,
    UnexpectedTaskState,
)
from virtsdk.objects import Flavor, ImageMeta, Instance, Migration
from virtsdk.services import COMPUTE
from virtsdk.states import MigrationStatus, MigrationType, TaskState, VMState
from virtsdk.validation import validate_hostname

Status = MigrationStatus
_ABORTABLE = (Status.ACCEPTED, Status.QUEUED, Status.PREPARING, Status.RUNNING)


class API:
    """See the module docstring.  One object per cloud; thread-safe."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        self.conf = conf
        self.db = db
        self.conductor = ConductorAPI(conf)
        self.compute = ComputeAPI(conf)
        self.drainer = Drainer(conf, db, self)
        self._drain_threads: dict[int, threading.Thread] = {}
        self._drain_lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _check_state(instance: Instance, action: str, vm_states: tuple[VMState, ...]) -> None:
        if instance.vm_state not in vm_states:
            raise InstanceInvalidState(instance.uuid, "vm_state", str(instance.vm_state),
                                       action)
        if instance.task_state is not None:
            raise UnexpectedTaskState(instance.uuid, None, str(instance.task_state))

    def _start_task(self, instance: Instance, task: TaskState,
                    vm_states: tuple[VMState, ...]) -> Instance:
        """The guarded transition that makes one request the owner of the instance."""
        return self.db.instance_update(instance.uuid, {"task_state": task},
                                       expected_task_state=None,
                                       expected_vm_state=vm_states)

    def _host(self, host: str) -> Service:
        return self.db.compute_service(host)

    def _capable(self, host: str, capability: str, feature: str) -> None:
        svc = self._host(host)
        if not svc.capabilities.get(capability, False):
            raise NotSupported(str(svc.capabilities.get("driver", host)), feature,
                               f"the driver of host {host!r} lacks {capability}")

    # -- flavors ----------------------------------------------------------------------------

    def flavor_create(self, ctx: RequestContext, name: str, memory_mb: int, vcpus: int,
                      root_gb: int, ephemeral_gb: int = 0, swap_mb: int = 0) -> Flavor:
        """Store a flavor (InvalidFlavor for bad sizes or a bad name, Conflict for a
        taken name).  Sizes must fit a 32-bit integer: memory_mb and vcpus >= 1, the
        rest >= 0 (:mod:`virtsdk.api.fields`)."""
        fields.flavor(name, memory_mb, vcpus, root_gb, ephemeral_gb, swap_mb)
        return self.db.flavor_create(Flavor(name, memory_mb, vcpus, root_gb,
                                            ephemeral_gb, swap_mb))

    def flavor_list(self, ctx: RequestContext) -> list[Flavor]:
        return self.db.flavor_list()

    def flavor_get(self, ctx: RequestContext, name: str) -> Flavor:
        return self.db.flavor_get(fields.flavor_name(name))

    # -- instances --------------------------------------------------------------------------

    def create_instance(self, ctx: RequestContext, name: str, flavor_name: str,
                        image: ImageMeta | None = None,
                        metadata: dict[str, str] | None = None,
                        host: str | None = None) -> Instance:
        """Boot an instance: the scheduler picks a host (or checks ``host``) and the
        build is cast there.  Returns the instance (vm_state BUILDING until the host
        has spawned it; :meth:`wait` for ACTIVE).  NoValidHost if nothing fits.
        InvalidInput for a name, image or metadata that breaks its rule
        (:mod:`virtsdk.api.fields`)."""
        fields.context(ctx)
        fields.check("instance name", name)
        if metadata is not None:
            fields.check("instance metadata", metadata)
        if image is not None:
            fields.image(image)
        flavor = self.db.flavor_get(fields.flavor_name(flavor_name))
        if host is not None:
            self._host(host)
        sysmeta = {"network_info": network.network_info_metadata(network.new_network_info())}
        instance = Instance(name=name, flavor=flavor, image=image or ImageMeta(
            id="cirros", name="cirros"), metadata=dict(metadata or {}),
            system_metadata=sysmeta)
        self.db.instance_create(instance)
        self.db.action_start(ctx, instance.uuid, "create")
        self.conductor.build_instance(ctx, instance, host)
        return self.db.instance_get(instance.uuid)

    def delete_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        """Destroy an idle instance and its disks.  A resized instance must be
        confirmed or reverted first (its other copy would be orphaned)."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        self._check_state(instance, "delete", (VMState.ACTIVE, VMState.STOPPED,
                                               VMState.ERROR, VMState.BUILDING))
        instance = self._start_task(instance, TaskState.DELETING,
                                    (VMState.ACTIVE, VMState.STOPPED, VMState.ERROR,
                                     VMState.BUILDING))
        self.db.action_start(ctx, instance_uuid, "delete")
        if instance.host is None:
            self.db.instance_destroy(instance_uuid)
            return
        self.compute.terminate_instance(ctx, instance.host, instance)

    def show_instance(self, ctx: RequestContext, instance_uuid: str) -> Instance:
        fields.instance_uuid(instance_uuid)
        return self.db.instance_get(instance_uuid)

    def list_instances(self, ctx: RequestContext, host: str | None = None) -> list[Instance]:
        if host is not None:
            validate_hostname(host)
        return self.db.instance_get_all(host)

    def reset_state(self, ctx: RequestContext, instance_uuid: str,
                    vm_state: VMState = VMState.ACTIVE) -> Instance:
        """Admin: clear the task and set ``vm_state`` (to reuse an instance left in
        ERROR once an operator has checked it)."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        vm_state = fields.check("vm_state", vm_state)
        return self.db.instance_update(instance_uuid, {"vm_state": vm_state,
                                                       "task_state": None})

    def list_actions(self, ctx: RequestContext, instance_uuid: str) -> list[InstanceAction]:
        """The instance's actions, oldest first, each with its events."""
        fields.instance_uuid(instance_uuid)
        self.db.instance_get(instance_uuid, read_deleted=True)
        return self.db.actions_get(instance_uuid)

    def list_services(self, ctx: RequestContext) -> list[Service]:
        return self.db.service_get_all(COMPUTE)

    def wait(self, ctx: RequestContext, instance_uuid: str, timeout: float = 60.0,
             poll: float = 0.005) -> Instance:
        """Block until the instance has no task (and is not BUILDING) and its latest
        action is closed (its events recorded); returns it.  MigrationTimeout after
        ``timeout`` seconds.  Not an RPC: it reads records."""
        fields.instance_uuid(instance_uuid)
        fields.check("wait timeout", timeout)
        fields.check("wait poll", poll)
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while True:
            inst = self.db.instance_get(instance_uuid, read_deleted=True)
            if inst.task_state is None and inst.vm_state != VMState.BUILDING:
                idle_since = idle_since or time.monotonic()
                if not self.db.action_latest_open(instance_uuid) or \
                        time.monotonic() - idle_since > 2.0:
                    return inst
            else:
                idle_since = None
            if time.monotonic() > deadline:
                raise MigrationTimeout(f"instance {instance_uuid} still {inst.vm_state}/"
                                       f"{inst.task_state} after {timeout}s")
            time.sleep(poll)

    # -- cold migration / resize ------------------------------------------------------------

    def resize(self, ctx: RequestContext, instance_uuid: str, flavor_name: str) -> None:
        """Resize to another flavor (scheduler picks the host; the own host only with
        ``[api] allow_resize_to_same_host``).  Ends in vm_state RESIZED, awaiting
        :meth:`confirm_resize` or :meth:`revert_resize`."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        flavor = self.db.flavor_get(fields.flavor_name(flavor_name))
        if flavor.flavorid == instance.flavor.flavorid:
            raise Invalid(f"instance {instance_uuid} already has flavor {flavor.name!r}; "
                          "choose another flavor (or use migrate)")
        for attr in ("root_gb", "ephemeral_gb"):
            if getattr(flavor, attr) < getattr(instance.flavor, attr):
                raise ResizeShrinkNotAllowed(
                    f"flavor {flavor.name!r} has {attr}={getattr(flavor, attr)} < "
                    f"{getattr(instance.flavor, attr)} of {instance.flavor.name!r}: "
                    "disks cannot shrink")
        self._cold(ctx, instance, flavor, None, MigrationType.RESIZE,
                   self.conf.api.allow_resize_to_same_host, "resize")

    def migrate(self, ctx: RequestContext, instance_uuid: str,
                host: str | None = None) -> None:
        """Cold-migrate with the same flavor, to ``host`` or where the scheduler says
        (the own host only with ``[api] allow_migrate_to_same_host``)."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        if host is not None:
            self._host(host)
            if host == instance.host and not self.conf.api.allow_migrate_to_same_host:
                raise Invalid(f"instance {instance_uuid} already is on {host!r} and "
                              "allow_migrate_to_same_host is off")
        self._cold(ctx, instance, instance.flavor, host, MigrationType.MIGRATION,
                   self.conf.api.allow_migrate_to_same_host, "migrate")

    def _cold(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
              host: str | None, migration_type: MigrationType, same_host: bool,
              action: str) -> None:
        states = (VMState.ACTIVE, VMState.STOPPED)
        self._check_state(instance, action, states)
        if migration_type == MigrationType.RESIZE:
            self._capable(str(instance.host), "supports_resize", "resize")
        self._capable(str(instance.host), "supports_cold_migration", "cold migration")
        props: dict[str, Any] = {"ignore_hosts": []}
        if not same_host:
            props["ignore_hosts"].append(instance.host)
        if host is not None:
            props["force_hosts"] = [host]
        instance = self._start_task(instance, TaskState.RESIZE_PREP, states)
        self.db.action_start(ctx, instance.uuid, action)
        with self._undo_if_undelivered(ctx, instance, TaskState.RESIZE_PREP):
            self.conductor.migrate_server(ctx, instance, {"filter_properties": props},
                                          live=False, rebuild=False, flavor=flavor,
                                          block_migration=None, disk_over_commit=False,
                                          migration_type=str(migration_type))

    @contextlib.contextmanager
    def _undo_if_undelivered(self, ctx: RequestContext, instance: Instance,
                             task: TaskState) -> Iterator[None]:
        """A request the conductor never received changed nothing: give the instance
        back (a timeout is different: the conductor may be working, so it stays)."""
        try:
            yield
        except oslo_messaging.MessageDeliveryFailure as exc:
            actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
            self.db.instance_update(instance.uuid, {"task_state": None},
                                    expected_task_state=task)
            raise

    def _finished_migration(self, instance: Instance) -> Migration:
        found = self.db.migration_get_all(instance_uuid=instance.uuid,
                                          statuses=[Status.FINISHED])
        if not found:
            raise MigrationNotFound(f"instance {instance.uuid} has no finished resize "
                                    "to confirm or revert")
        return found[-1]

    def confirm_resize(self, ctx: RequestContext, instance_uuid: str) -> None:
        """Keep the resized instance; the source deletes its kept copy."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        self._check_state(instance, "confirm the resize of", (VMState.RESIZED,))
        instance = self._start_task(instance, TaskState.RESIZE_CONFIRMING,
                                    (VMState.RESIZED,))
        try:
            migration = self._finished_migration(instance)
        except MigrationNotFound:
            self.db.instance_update(instance.uuid, {"task_state": None},
                                    expected_task_state=TaskState.RESIZE_CONFIRMING)
            raise
        migration = self.db.migration_update(int(migration.id or 0),
                                             {"status": Status.CONFIRMING},
                                             expected_status=Status.FINISHED)
        self.db.action_start(ctx, instance_uuid, "confirmResize")
        try:
            self.compute.confirm_resize(ctx, migration.source_host, instance, migration)
        except Exception:
            self._undo_finish_step(ctx, instance, migration, TaskState.RESIZE_CONFIRMING,
                                   Status.CONFIRMING)
            raise

    def revert_resize(self, ctx: RequestContext, instance_uuid: str) -> None:
        """Go back to the original instance on the source host."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        self._check_state(instance, "revert the resize of", (VMState.RESIZED,))
        instance = self._start_task(instance, TaskState.RESIZE_REVERTING,
                                    (VMState.RESIZED,))
        try:
            migration = self._finished_migration(instance)
        except MigrationNotFound:
            self.db.instance_update(instance.uuid, {"task_state": None},
                                    expected_task_state=TaskState.RESIZE_REVERTING)
            raise
        migration = self.db.migration_update(int(migration.id or 0),
                                             {"status": Status.REVERTING},
                                             expected_status=Status.FINISHED)
        self.db.action_start(ctx, instance_uuid, "revertResize")
        try:
            self.compute.revert_resize(ctx, str(migration.dest_host), instance, migration)
        except Exception:
            self._undo_finish_step(ctx, instance, migration, TaskState.RESIZE_REVERTING,
                                   Status.REVERTING)
            raise

    def _undo_finish_step(self, ctx: RequestContext, instance: Instance,
                          migration: Migration, task: TaskState,
                          status: MigrationStatus) -> None:
        """The request never left this process: give the resize back to the user."""
        self.db.migration_update(int(migration.id or 0), {"status": Status.FINISHED},
                                 expected_status=status)
        actions.finish_action(self.db, ctx, instance.uuid, "request could not be sent")
        self.db.instance_update(instance.uuid, {"task_state": None},
                                expected_task_state=task)

    # -- live migration ---------------------------------------------------------------------

    def live_migrate(self, ctx: RequestContext, instance_uuid: str,
                     host: str | None = None, block_migration: bool | str = "auto",
                     disk_over_commit: bool = False) -> Migration:
        """Live-migrate a running instance to ``host`` (checked: up, capacity, not
        the source, drivers compatible) or to the scheduler's choice.
        ``block_migration``: True, False or "auto" (decided by the drivers' checks).
        Returns the migration record as the conductor left it (status 'accepted' or
        later; :meth:`get_migration` follows it)."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        fields.boolean("disk_over_commit", disk_over_commit)
        instance = self.db.instance_get(instance_uuid)
        if block_migration == "auto":
            block: bool | None = None
        elif isinstance(block_migration, bool):
            block = block_migration
        else:
            raise Invalid(f"block_migration must be True, False or 'auto', "
                          f"not {block_migration!r}")
        if host is not None:
            self._host(host)
        self._check_state(instance, "live-migrate", (VMState.ACTIVE,))
        self._capable(str(instance.host), "supports_live_migration", "live migration")
        instance = self._start_task(instance, TaskState.MIGRATING, (VMState.ACTIVE,))
        self.db.action_start(ctx, instance_uuid, "live-migration")
        with self._undo_if_undelivered(ctx, instance, TaskState.MIGRATING):
            mid = self.conductor.migrate_server(ctx, instance, {"host": host}, live=True,
                                                rebuild=False, flavor=None,
                                                block_migration=block,
                                                disk_over_commit=disk_over_commit)
        return self.db.migration_get(int(mid))

    def _live_migration(self, instance_uuid: str, migration_id: int) -> Migration:
        migration = self.db.migration_get(fields.migration_id(migration_id))
        if migration.instance_uuid != instance_uuid or \
                migration.migration_type != MigrationType.LIVE:
            raise MigrationNotFound(f"instance {instance_uuid} has no live migration "
                                    f"{migration_id}")
        return migration

    def live_migration_abort(self, ctx: RequestContext, instance_uuid: str,
                             migration_id: int) -> None:
        """Cancel a queued, preparing or running live migration; the guest stays on
        the source and the migration ends 'cancelled'."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        migration = self._live_migration(instance_uuid, migration_id)
        if migration.status not in _ABORTABLE:
            raise InstanceInvalidState(instance_uuid, "migration status",
                                       str(migration.status), "abort the migration of")
        self._capable(migration.source_host, "supports_live_migration_abort",
                      "aborting a live migration")
        self.db.action_start(ctx, instance_uuid, "live_migration_abort")
        self.compute.live_migration_abort(ctx, migration.source_host, instance,
                                          migration_id)
        actions.finish_action(self.db, ctx, instance_uuid)

    def live_migration_force_complete(self, ctx: RequestContext, instance_uuid: str,
                                      migration_id: int) -> None:
        """Make a running live migration finish now (post-copy or pausing)."""
        fields.context(ctx)
        fields.instance_uuid(instance_uuid)
        instance = self.db.instance_get(instance_uuid)
        migration = self._live_migration(instance_uuid, migration_id)
        if migration.status != Status.RUNNING:
            raise InstanceInvalidState(instance_uuid, "migration status",
                                       str(migration.status),
                                       "force the migration to complete of")
        self._capable(migration.source_host, "supports_live_migration_force_complete",
                      "forcing a live migration to complete")
        self.db.action_start(ctx, instance_uuid, "live_migration_force_complete")
        self.compute.live_migration_force_complete(ctx, migration.source_host, instance,
                                                   migration_id)
        actions.finish_action(self.db, ctx, instance_uuid)

    # -- migration records ------------------------------------------------------------------

    def list_migrations(self, ctx: RequestContext, instance_uuid: str | None = None,
                        host: str | None = None,
                        status: MigrationStatus | None = None,
                        migration_type: MigrationType | None = None) -> list[Migration]:
        """Migrations, oldest first, filtered by instance, host, status and type."""
        if instance_uuid is not None:
            fields.instance_uuid(instance_uuid)
        if host is not None:
            validate_hostname(host)
        if status is not None:
            status = fields.check("migration status", status)
        if migration_type is not None:
            migration_type = fields.check("migration type", migration_type)
        return self.db.migration_get_all(instance_uuid, host,
                                         None if status is None else [status],
                                         migration_type)

    def get_migration(self, ctx: RequestContext, instance_uuid: str,
                      migration_id: int) -> Migration:
        """One migration of the instance, with its progress (never decreasing)."""
        fields.instance_uuid(instance_uuid)
        migration = self.db.migration_get(fields.migration_id(migration_id))
        if migration.instance_uuid != instance_uuid:
            raise MigrationNotFound(f"instance {instance_uuid} has no migration "
                                    f"{migration_id}")
        return migration

    def get_migration_details(self, ctx: RequestContext,
                              migration_id: int) -> dict[str, Any]:
        """Free-form details of a migration (e.g. final downtime of a live one)."""
        return self.db.migration_details(fields.migration_id(migration_id))

    # -- draining a host --------------------------------------------------------------------

    def drain_plan(self, ctx: RequestContext, host: str, *, live: bool = True,
                   allow_cold: bool = False) -> Plan:
        """The plan a drain of ``host`` would follow now (nothing changes)."""
        fields.context(ctx)
        fields.boolean("live", live)
        fields.boolean("allow_cold", allow_cold)
        return self.drainer.plan(host, live=live, allow_cold=allow_cold)

    def drain_host(self, ctx: RequestContext, host: str, *, live: bool = True,
                   allow_cold: bool = False) -> Drain:
        """Disable ``host`` for scheduling and move every guest off it, live (cold
        only for guests that cannot move live, and only with ``allow_cold``; every
        guest cold with ``live=False``).  Returns the drain's record at once; the
        drain runs in this process (:meth:`drain_wait`, :meth:`drain_get`).
        DrainRefused when no destination can take any guest; Conflict when the host
        is already being drained."""
        fields.context(ctx)
        fields.boolean("live", live)
        fields.boolean("allow_cold", allow_cold)
        drain = self.drainer.start(host, live=live, allow_cold=allow_cold)
        self._run_drain(ctx, drain.id)
        return drain

    def _run_drain(self, ctx: RequestContext, drain_id: int) -> None:
        with self._drain_lock:
            running = self._drain_threads.get(drain_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self.drainer.run, args=(ctx, drain_id),
                                      name=f"drain-{drain_id}", daemon=True)
            self._drain_threads[drain_id] = thread
            thread.start()

    def drain_resume(self, ctx: RequestContext) -> list[Drain]:
        """Pick up the drains a stopped process left running (or aborting)."""
        fields.context(ctx)
        drains = self.db.drain_get_all(active_only=True)
        for drain in drains:
            self._run_drain(ctx, drain.id)
        return drains

    def drain_abort(self, ctx: RequestContext, host: str) -> Drain:
        """Stop the running drain of ``host``: no new migration starts, those in
        flight are aborted; every guest ends running exactly once, where it is."""
        fields.context(ctx)
        self._host(host)
        active = self.db.drain_get_all(host, active_only=True)
        if not active:
            raise Conflict(f"host {host!r} is not being drained")
        drain = self.drainer.abort(active[-1].id)
        self._run_drain(ctx, drain.id)  # someone must carry the abort out
        return drain

    def drain_get(self, ctx: RequestContext, drain_id: int) -> Drain:
        return self.db.drain_get(fields.drain_id(drain_id))

    def drain_list(self, ctx: RequestContext, host: str | None = None) -> list[Drain]:
        if host is not None:
            validate_hostname(host)
        return self.db.drain_get_all(host)

    def drain_wait(self, ctx: RequestContext, drain_id: int,
                   timeout: float = 600.0, poll: float = 0.05) -> Drain:
        """Block until the drain ends; MigrationTimeout after ``timeout`` seconds."""
        fields.drain_id(drain_id)
        fields.check("wait timeout", timeout)
        fields.check("wait poll", poll)
        deadline = time.monotonic() + timeout
        while True:
            drain = self.db.drain_get(drain_id)
            if drain.finished:
                return drain
            if time.monotonic() > deadline:
                raise MigrationTimeout(f"drain {drain_id} still {drain.status} after "
                                       f"{timeout}s")
            time.sleep(poll)

    def enable_host(self, ctx: RequestContext, host: str) -> Service:
        """Let the scheduler use ``host`` again (undoes a drain's flag).  Conflict
        while a drain of the host is running: abort it first."""
        fields.context(ctx)
        self._host(host)
        if self.db.drain_get_all(host, active_only=True):
            raise Conflict(f"host {host!r} is being drained; abort the drain first")
        set_host_disabled(self.db, host, False)
        return self._host(host)

    def stop_drains(self) -> None:
        """Stop this process's drain loops (their records stay; drain_resume)."""
        self.drainer.stop()
        with self._drain_lock:
            threads = list(self._drain_threads.values())
        for thread in threads:
            thread.join(timeout=10)
