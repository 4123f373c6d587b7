"""The compute manager: one per host, the RPC endpoint of topic ``compute``.

Who calls it: the conductor and other hosts' managers over RPC (server = this host),
and :class:`virtsdk.compute.service.ComputeService` (``init_host`` at start,
``update_available_resource`` on every heartbeat).  It owns this host's driver, which
it loads by entry-point name; it never imports a driver.

Every public method here is an RPC method.  The flows are split by theme into mixins
(:mod:`.cold_migration`, :mod:`.live_migration`); start-up recovery
(:class:`~.recovery.Recovery`) and the reconcile task (:class:`~.reconcile.Reconciler`)
are objects built here with explicit dependencies.  This module holds
the instance lifecycle and what every flow shares.  Each flow keeps the vm_state /
task_state / migration-status machine of docs/flows.md ("States") and ends by clearing
the task state *after* the migration record reached its final status, so "task_state
is None" means "this flow is over" to any observer.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import oslo_messaging
from oslo_concurrency import lockutils
from oslo_config import cfg

from virtsdk import actions, network
from virtsdk.compute.base import ConductorClient
from virtsdk.compute.cold_migration import ColdMigrationMixin
from virtsdk.compute.fence import Fence
from virtsdk.compute.live_migration import LiveMigrationMixin
from virtsdk.compute.reconcile import Reconciler
from virtsdk.compute.recovery import Recovery
from virtsdk.compute.rpcapi import VERSIONS as COMPUTE_RPC_VERSIONS
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InstanceNotFound, InsufficientResources
from virtsdk.notifications import Notifier, instance_payload
from virtsdk.objects import Flavor, ImageMeta, Instance
from virtsdk.resources import AllocationRatios, shortfalls, with_usage
from virtsdk.services import COMPUTE
from virtsdk.states import PowerState, TaskState, VMState

LOG = logging.getLogger(__name__)

#: Old name of :data:`virtsdk.services.COMPUTE`, kept for code not yet updated.
BINARY = COMPUTE


class ComputeManager(ColdMigrationMixin, LiveMigrationMixin):
    """Manages the instances of one host through its driver (see the module doc)."""

    #: answers every compute RPC API version up to the current one (rpcapi.VERSIONS)
    target = oslo_messaging.Target(version=COMPUTE_RPC_VERSIONS.current)

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 driver: ComputeDriver, conductor: ConductorClient) -> None:
        self.conf = conf
        self.host = host
        #: every record write, driver call and RPC of this incarnation passes the
        #: fence: once the service stopped, a thread left behind can change nothing
        self.fence = Fence(f"compute {host}")
        self._real_driver = driver
        self.db = self.fence.guard(db, serialize=True)
        self.driver = self.fence.guard(driver)
        self.compute_rpc = self.fence.guard(ComputeAPI(conf))
        self.conductor_rpc = self.fence.guard(conductor)
        self.notifier = Notifier(conf, "compute", host)
        self.reconciler = Reconciler(host, self.db, self.driver,
                                     conf.compute.reconcile_grace)
        self.recovery = Recovery(host, self.db, self.driver, self.compute_rpc, self)
        #: set when the service stops: late callbacks of a "crashed" manager do nothing
        self.stopped = threading.Event()
        self._live_threads: dict[int, threading.Thread] = {}
        self._aborted: set[int] = set()
        self._state_lock = threading.Lock()

    # -- service hooks (not RPC: called by ComputeService) --------------------------------

    def _start(self) -> None:
        """Called once by the service before it serves RPC: driver init, resource
        report, then recovery of what a crash interrupted."""
        self.driver.init_host(self.host)
        self._report_resources()
        self.recovery.recover_interrupted(RequestContext(request_id="req-init-host"))

    def _stop(self) -> None:
        self.stopped.set()
        self.fence.close()
        try:
            self._real_driver.cleanup_host(self.host)
        except Exception:  # shutting down anyway
            LOG.exception("driver cleanup_host failed on %s", self.host)

    def _report_resources(self) -> None:
        """Heartbeat with the capacity the driver reports now."""
        res = self.driver.get_available_resource(self.host)
        self.db.service_heartbeat(self.host, COMPUTE, resources=res.to_primitive())

    # -- shared helpers -------------------------------------------------------------------

    def _instance(self, instance: Instance) -> Instance:
        """The authoritative copy of an instance passed over RPC."""
        return self.db.instance_get(instance.uuid)

    def _claim(self, instance: Instance, flavor: Flavor, what: str) -> None:
        """Raise InsufficientResources (reschedulable) unless ``flavor`` fits here
        on top of everything claimed.  Call with :meth:`_resource_lock` held; the
        caller records the claim (instance host or migration) before releasing it."""
        res = with_usage(self.driver.get_available_resource(self.host),
                         self.db.host_usage(self.host, exclude_claim_of=instance.uuid))
        short = shortfalls(res, flavor, AllocationRatios.from_conf(self.conf))
        if short:
            raise InsufficientResources(
                f"host {self.host!r} lacks {', '.join(short)} for {what} "
                f"(flavor {flavor.name!r})")

    def _resource_lock(self) -> Any:
        return lockutils.lock(f"virtsdk-compute-resources-{self.host}")

    def _notify(self, ctx: RequestContext, event: str, instance: Instance,
                **extra: Any) -> None:
        self.notifier.info(ctx, event, instance_payload(instance, **extra))

    # -- RPC: instance lifecycle ----------------------------------------------------------

    def build_and_run_instance(self, ctx: RequestContext, instance: Instance) -> None:
        """Cast by the conductor to the chosen host: spawn the instance.  On success
        vm_state ACTIVE; on failure vm_state ERROR and the driver left nothing."""
        instance = self._instance(instance)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid,
                                      "compute_build_and_run_instance", self.host):
                instance = self.db.instance_update(
                    instance.uuid, {"task_state": TaskState.SPAWNING},
                    expected_task_state=None)
                self._notify(ctx, "instance.create.start", instance)
                self.driver.spawn(ctx, instance, instance.image or ImageMeta(id="none"),
                                  network.network_info(instance))
                self.db.instance_update(
                    instance.uuid, {"vm_state": VMState.ACTIVE, "task_state": None,
                                    "power_state": PowerState.RUNNING},
                    expected_task_state=TaskState.SPAWNING)
                self._notify(ctx, "instance.create.end", instance)
        except Exception as exc:  # noqa: BLE001 - a cast: record, do not raise
            LOG.warning("build of %s on %s failed: %s", instance.uuid, self.host, exc)
            try:
                self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR,
                                                        "task_state": None})
            except InstanceNotFound:
                pass
        actions.finish_action(self.db, ctx, instance.uuid)

    def terminate_instance(self, ctx: RequestContext, instance: Instance) -> None:
        """Called by the API on the instance's host: destroy it with its disks and
        mark it deleted.  Raises what the driver raised (the instance then stays, in
        ERROR, so nothing is lost silently)."""
        instance = self._instance(instance)
        with actions.event_reporter(self.db, ctx, instance.uuid, "compute_terminate_instance",
                                  self.host):
            try:
                self.driver.destroy(ctx, instance, network.network_info(instance),
                                    destroy_disks=True)
            except Exception as exc:
                actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
                self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR,
                                                        "task_state": None})
                raise
            self.db.instance_destroy(instance.uuid)
        self._notify(ctx, "instance.delete.end", instance)
        actions.finish_action(self.db, ctx, instance.uuid)

    def instance_power_state(self, ctx: RequestContext, instance: Instance) -> int | None:
        """Called over RPC (recovery, checks): the power state the driver reports for
        the instance here, or None if this host does not have it."""
        try:
            return int(self.driver.get_info(instance).state)
        except InstanceNotFound:
            return None

    # -- RPC: audit (virtsdk audit) -------------------------------------------------------

    def audit_host(self, ctx: RequestContext) -> dict[str, Any]:
        """RPC call from ``virtsdk audit``: what this hypervisor holds per instance
        (None if the driver cannot list) and its resource use."""
        return self.reconciler.holdings()

    def audit_fix(self, ctx: RequestContext,
                  differences: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """RPC call from ``virtsdk audit --fix``: remove the given safely orphaned
        holdings that are still orphaned now; returns the ones removed."""
        return self.reconciler.fix(ctx, differences)
