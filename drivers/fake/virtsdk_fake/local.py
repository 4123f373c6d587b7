"""One fake driver's own host on its fabric: what the lifecycle, cold-migration and
live-migration parts of :class:`virtsdk_fake.driver.FakeDriver` all work on.

:func:`join` reads ``[fake]``, joins the fabric named there and returns the
:class:`LocalHost`; the driver builds its flows (:class:`~virtsdk_fake.cold.FakeColdMigration`,
:class:`~virtsdk_fake.live.FakeLiveMigration`) on it.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import Instance
from virtsdk.states import PowerState
from virtsdk_fake.fabric import Capacity, Fabric, FakeHost, get_fabric
from virtsdk_fake.storage import FakeInstance


def _parse_capacity(host: str, raw: str) -> Capacity:
    try:
        vcpus, memory_mb, local_gb = (int(x) for x in raw.split("/"))
    except ValueError:
        raise cfg.Error(f"[fake] host_capacity for {host!r} must be VCPUS/MEMORY_MB/LOCAL_GB, "
                        f"got {raw!r}") from None
    return Capacity(vcpus, memory_mb, local_gb)


class LocalHost:
    """Host ``name`` of ``fabric`` (its state ``state``) as one driver sees it.

    ``options`` is the driver's ``[fake]`` group, read on every use so overrides apply
    at once.  The fabric's clock and faults are read through ``fabric`` on every use:
    :meth:`Fabric.use_clock` and :meth:`Fabric.reset` replace them.
    """

    def __init__(self, fabric: Fabric, name: str, state: FakeHost,
                 options: cfg.ConfigOpts.GroupAttr) -> None:
        self.fabric = fabric
        self.name = name
        self.state = state
        self.options = options

    @property
    def kib_per_mb(self) -> int:
        """Real guest memory kept per MiB of flavor memory (``[fake] memory_kib_per_mb``)."""
        value: int = self.options.memory_kib_per_mb
        return value

    @property
    def enforce_capacity(self) -> bool:
        """Whether placements are checked against the host's capacity."""
        value: bool = self.options.enforce_capacity
        return value

    def step(self, step: str) -> None:
        """Fault-injection point ``step`` on this host (never call with a lock held)."""
        self.fabric.faults.hit(step, self.name)

    def get(self, instance: Instance) -> FakeInstance:
        """The instance defined on this host; InstanceNotFound otherwise."""
        with self.fabric.lock:
            found = self.state.instances.get(instance.uuid)
        if found is None:
            raise InstanceNotFound(instance.uuid, self.name)
        return found

    def power_off_guest(self, inst: FakeInstance, timeout: int, retry_interval: int) -> None:
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


def join(options: cfg.ConfigOpts.GroupAttr, host: str) -> LocalHost:
    """Join the fabric named in ``options`` (a ``[fake]`` group) as ``host``: apply the
    fabric-wide options, the host's capacity and its configured stalls."""
    fabric = get_fabric(options.fabric, options.time_scale, options.fabric_dir)
    fabric.shared_storage = options.shared_storage
    fabric.link_bandwidth_mbps = options.link_bandwidth_mbps
    fabric.host_link_mbps = options.host_link_mbps
    overrides = options.host_capacity or {}
    if host in overrides:
        capacity = _parse_capacity(host, overrides[host])
    else:
        capacity = Capacity(options.host_vcpus, options.host_memory_mb, options.host_local_gb)
    state = fabric.join(host, capacity)
    for step, seconds in (options.stall_steps or {}).items():
        try:
            wait = float(seconds)
        except ValueError:
            raise cfg.Error(f"[fake] stall_steps: {step!r} needs SECONDS, got "
                            f"{seconds!r}") from None
        fabric.faults.stall(step, host, times=None, seconds=wait or None)
    return LocalHost(fabric, host, state, options)
