"""Shared plumbing of the fake driver: configuration, fabric membership, fault steps.

:class:`FakeDriverBase` is the common base of the lifecycle, cold-migration and
live-migration parts that :class:`virtsdk_fake.driver.FakeDriver` puts together.
"""

from __future__ import annotations

from typing import ClassVar

from oslo_config import cfg

from virtsdk.driver import Capabilities, ComputeDriver
from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import Instance
from virtsdk.states import PowerState
from virtsdk_fake import opts
from virtsdk_fake.fabric import Capacity, Fabric, FakeHost, get_fabric
from virtsdk_fake.storage import FakeInstance


def _parse_capacity(host: str, raw: str) -> Capacity:
    try:
        vcpus, memory_mb, local_gb = (int(x) for x in raw.split("/"))
    except ValueError:
        raise cfg.Error(f"[fake] host_capacity for {host!r} must be VCPUS/MEMORY_MB/LOCAL_GB, "
                        f"got {raw!r}") from None
    return Capacity(vcpus, memory_mb, local_gb)


class FakeDriverBase(ComputeDriver):
    """Joins the fabric named in ``[fake] fabric`` as host ``host`` on construction."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        supports_cold_migration=True,
        supports_resize=True,
        supports_live_migration=True,
        supports_block_migration=True,
        supports_migrate_to_same_host=True,
        supports_live_migration_abort=True,
        supports_live_migration_force_complete=True,
        supports_post_copy=True,
        supports_auto_converge=True,
        supports_shared_storage_detection=True,
        has_imagecache=False,
        image_formats=("raw", "qcow2"),
    )

    def __init__(self, conf: cfg.ConfigOpts, host: str) -> None:
        super().__init__(conf, host)
        group = self.config_group
        self.fabric: Fabric = get_fabric(group.fabric, group.time_scale, group.fabric_dir)
        self.fabric.shared_storage = group.shared_storage
        self.fabric.link_bandwidth_mbps = group.link_bandwidth_mbps
        self.fabric.host_link_mbps = group.host_link_mbps
        overrides = group.host_capacity or {}
        if host in overrides:
            capacity = _parse_capacity(host, overrides[host])
        else:
            capacity = Capacity(group.host_vcpus, group.host_memory_mb, group.host_local_gb)
        self.hostobj: FakeHost = self.fabric.join(host, capacity)
        for step, seconds in (group.stall_steps or {}).items():
            try:
                wait = float(seconds)
            except ValueError:
                raise cfg.Error(f"[fake] stall_steps: {step!r} needs SECONDS, got "
                                f"{seconds!r}") from None
            self.fabric.faults.stall(step, host, times=None, seconds=wait or None)

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return opts.list_opts()

    # -- helpers used by every part ------------------------------------------------------

    def _step(self, step: str) -> None:
        """Fault-injection point ``step`` on this host (never call with a lock held)."""
        self.fabric.faults.hit(step, self.host)

    def _get(self, instance: Instance) -> FakeInstance:
        """The instance defined on this host; InstanceNotFound otherwise."""
        with self.fabric.lock:
            found = self.hostobj.instances.get(instance.uuid)
        if found is None:
            raise InstanceNotFound(instance.uuid, self.host)
        return found

    @property
    def _kib_per_mb(self) -> int:
        return self.config_group.memory_kib_per_mb

    @property
    def _enforce(self) -> bool:
        return self.config_group.enforce_capacity

    def _power_off_guest(self, inst: FakeInstance, timeout: int, retry_interval: int) -> None:
        """Shut the guest down: ACPI requests every ``retry_interval`` simulated seconds
        for up to ``timeout``, then force.  A guest with metadata
        ``fake:ignore_shutdown=true`` ignores the requests.  Memory is lost."""
        if inst.power_state == PowerState.SHUTDOWN:
            return
        clean = False
        if timeout > 0:
            ignores = inst.metadata.get("fake:ignore_shutdown", "").lower() == "true"
            waited = 0.0
            interval = retry_interval if retry_interval > 0 else timeout
            while waited < timeout:
                inst.shutdown_requests += 1
                if not ignores:
                    clean = True
                    self.fabric.clock.sleep(1.0)
                    break
                step = min(interval, timeout - waited)
                self.fabric.clock.sleep(step)
                waited += step
        with self.fabric.lock:
            inst.power_state = PowerState.SHUTDOWN
            inst.last_shutdown = "clean" if clean else "forced"
            inst.memory[:] = bytes(len(inst.memory))
