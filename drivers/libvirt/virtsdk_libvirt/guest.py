"""Power control of one libvirt domain and the mapping of its state.

Used on any host by ``LibvirtDriver`` (power_on/power_off/destroy, spawn, the
cold-migration steps) and by ``virtsdk_libvirt.live_migration``.  :func:`shutdown_then_force`
is the clean-shutdown loop with a deadline; it is written against three callables so
its timing logic is testable without a hypervisor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import libvirt

from virtsdk.exceptions import InstanceNotFound, MigrationTimeout
from virtsdk.states import PowerState

LOG = logging.getLogger(__name__)

_STATE_MAP: dict[int, PowerState] = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


def map_state(libvirt_state: int) -> PowerState:
    """virtsdk's PowerState for a ``virDomain.state()[0]`` value."""
    return _STATE_MAP.get(libvirt_state, PowerState.NOSTATE)


def shutdown_then_force(
    request_shutdown: Callable[[], None],
    is_off: Callable[[], bool],
    force_off: Callable[[], None],
    timeout: float,
    retry_interval: float,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Ask for a clean shutdown every ``retry_interval`` seconds until ``timeout``
    seconds have passed, then force the guest off.

    Returns True if the guest stopped cleanly (or was already off), False if it had
    to be forced.
    ``timeout <= 0`` forces it off at once.  Never returns with the guest running.
    """
    if is_off():
        return True
    if timeout > 0:
        start = clock()
        next_request = start
        retry = max(retry_interval, poll)
        while clock() - start < timeout:
            if clock() >= next_request:
                request_shutdown()
                next_request = clock() + retry
            if is_off():
                return True
            sleep(min(poll, max(0.0, timeout - (clock() - start))))
        if is_off():
            return True
    force_off()
    return False


class Guest:
    """A thin wrapper over ``virDomain`` with the operations the driver needs."""

    def __init__(self, domain: libvirt.virDomain) -> None:
        self.domain = domain

    @property
    def name(self) -> str:
        return self.domain.name()

    def power_state(self) -> PowerState:
        try:
            return map_state(self.domain.state()[0])
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise InstanceNotFound(self.name) from exc
            raise

    def is_active(self) -> bool:
        return bool(self.domain.isActive())

    def start(self, wait_timeout: float = 60.0) -> None:
        """Start the defined domain and return once libvirt reports it running.
        Raises MigrationTimeout (naming the domain) if it does not get there."""
        if not self.is_active():
            self.domain.create()
        deadline = time.monotonic() + wait_timeout
        while self.power_state() != PowerState.RUNNING:
            if time.monotonic() > deadline:
                raise MigrationTimeout(
                    f"domain {self.name} did not reach running in {wait_timeout}s")
            time.sleep(0.2)

    def force_off(self) -> None:
        """Hard power-off; a no-op for a domain that is not running."""
        try:
            if self.is_active():
                self.domain.destroy()
        except libvirt.libvirtError as exc:
            if self.is_active():
                raise
            LOG.debug("domain %s stopped while being destroyed: %s", self.name, exc)

    def _request_shutdown(self) -> None:
        try:
            self.domain.shutdown()
        except libvirt.libvirtError as exc:
            if self.is_active():
                LOG.info("shutdown request to %s failed: %s", self.name, exc)

    def power_off(self, timeout: float, retry_interval: float) -> bool:
        """Clean shutdown with deadline, then hard off (see shutdown_then_force)."""
        clean = shutdown_then_force(
            self._request_shutdown, lambda: not self.is_active(), self.force_off,
            timeout, retry_interval)
        LOG.info("domain %s powered off (%s)", self.name, "clean" if clean else "forced")
        return clean

    def undefine(self) -> None:
        """Remove the persistent definition (managed save, snapshots metadata,
        NVRAM included); a no-op for a transient domain."""
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        try:
            if self.domain.isPersistent():
                self.domain.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise

    def xml(self, flags: int = 0) -> str:
        return self.domain.XMLDesc(flags)
