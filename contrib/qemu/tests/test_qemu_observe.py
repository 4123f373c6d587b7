"""The QEMU driver's observation hooks on the lab: they report what the host really
runs and holds, not what the driver's own files say."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from virtsdk_qemu import observe

from virtsdk.context import RequestContext
from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import NetworkInfo
from virtsdk.states import PowerState

from .qemu_lab import new_instance, small_flavor

pytestmark = pytest.mark.lab

NET = NetworkInfo()


def _qemu_pid(drv: Any, uuid: str) -> int:
    pids: list[int] = [p.pid for p in observe.processes()
            if p.option("-uuid") == uuid and observe.own_socket(drv, p) is not None]
    assert len(pids) == 1, pids
    return pids[0]


def test_hooks_see_a_qemu_the_driver_lost_track_of(qemu_drivers: Any,
                                                   guest_meta: Any) -> None:
    """A QEMU whose pid file is gone: the driver thinks the guest is off, the hooks
    still see the process running and holding the instance."""
    drv, other = qemu_drivers
    ctx = RequestContext()
    inst = new_instance("observe-orphan", guest_meta, small_flavor(root_gb=1))
    drv.spawn(ctx, inst, guest_meta, NET)
    pid = _qemu_pid(drv, inst.uuid)
    try:
        assert drv.observe_guests() == {inst.uuid: PowerState.RUNNING}
        assert other.observe_guests() == {}
        drv.guest(inst).files.pidfile.unlink()
        assert drv.get_info(inst).state == PowerState.SHUTDOWN  # bookkeeping lost it
        assert drv.observe_guests() == {inst.uuid: PowerState.RUNNING}
        assert f"process {pid} ({os.path.basename(drv.qconf.emulator)})" in (
            drv.observe_footprint(inst))
        assert other.observe_footprint(inst) == []
    finally:
        os.kill(pid, signal.SIGKILL)
        for _ in range(600):  # SIGKILL is not refused; bounded so a hang cannot be
            if not any(p.pid == pid for p in observe.processes()):
                break
            time.sleep(0.05)
    assert drv.observe_guests() == {}


def test_marker_round_trip_running_paused_and_stopped(qemu_drivers: Any,
                                                      guest_meta: Any) -> None:
    drv = qemu_drivers[0]
    ctx = RequestContext()
    inst = new_instance("observe-marker", guest_meta, small_flavor(root_gb=1))
    with pytest.raises(InstanceNotFound):
        drv.observe_disk(inst)
    drv.spawn(ctx, inst, guest_meta, NET)
    drv.write_disk_marker(inst, b"running")
    seen = drv.observe_disk(inst)
    assert seen.marker.startswith(b"running") and seen.size == 1024 ** 3
    drv.guest(inst).qmp.execute("stop")
    assert drv.observe_guests() == {inst.uuid: PowerState.PAUSED}
    drv.write_disk_marker(inst, b"paused!")
    assert drv.observe_disk(inst).marker.startswith(b"paused!")
    drv.power_off(inst)
    assert drv.observe_guests() == {}
    assert drv.observe_disk(inst).marker.startswith(b"paused!")
    drv.write_disk_marker(inst, b"stopped")
    drv.power_on(ctx, inst, NET)
    assert drv.observe_disk(inst).marker.startswith(b"stopped")
    drv.destroy(ctx, inst, NET)
    assert drv.observe_footprint(inst) == []
