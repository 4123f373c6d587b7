"""Draining a real libvirt lab host: three small guests booted on host A leave it for
host B through the drain (plan, live migrations under the hosts' limits); every
guest keeps its boot (the heartbeat sequence goes on, no reboot) and runs only on B;
host A ends disabled and is enabled again.
"""

from __future__ import annotations

from typing import Any

import pytest

from virtsdk.context import get_admin_context
from virtsdk.objects import ImageMeta
from virtsdk.services import COMPUTE
from virtsdk.states import PowerState, VMState

from .libvirt_lab import console_of as console

pytestmark = pytest.mark.lab
TIMEOUT = 300


def test_drain_a_lab_host_keeps_every_guest_running(libvirt_cloud: Any,
                                                     guest_image: Any) -> None:
    cloud = libvirt_cloud
    api, ctx = cloud.api, get_admin_context()
    a, b = sorted(cloud.computes)
    api.flavor_create(ctx, "lv-drain", 128, 1, 0)
    image = ImageMeta(id=f"vsdk-drain-{guest_image.key}",
                      properties={"kernel": str(guest_image.kernel),
                                  "initrd": str(guest_image.initrd),
                                  "cmdline": guest_image.cmdline()})
    uuids = [api.create_instance(ctx, f"drain-{i}", "lv-drain", image=image, host=a).uuid
             for i in range(3)]
    beats = {}
    for u in uuids:
        inst = api.wait(ctx, u, timeout=TIMEOUT)
        assert (inst.vm_state, inst.host) == (VMState.ACTIVE, a), inst
        beats[u] = console(cloud, a, u).wait_for_heartbeat(TIMEOUT)
    plan = api.drain_plan(ctx, a)
    assert sorted(m.uuid for m in plan.moves) == sorted(uuids)
    assert {m.dest for m in plan.moves} == {b}
    drain = api.drain_wait(ctx, api.drain_host(ctx, a).id, timeout=3 * TIMEOUT)
    try:
        assert drain.status == "complete", drain
        assert cloud.db.service_get(a, COMPUTE).disabled
        for u in uuids:
            moved = api.show_instance(ctx, u)
            assert (moved.host, moved.vm_state, moved.power_state) == (
                b, VMState.ACTIVE, PowerState.RUNNING), moved
            assert not cloud.computes[a].driver.instance_exists(moved)
            log = console(cloud, b, u)
            after = log.wait_for_heartbeat(TIMEOUT, boot_id=beats[u].boot_id)
            assert after.seq > beats[u].seq
            assert log.boot_ids() == []  # the same boot, not a restart
        assert all(g.downtime_ms is not None for g in drain.guests)
    finally:
        api.stop_drains()
        api.enable_host(ctx, a)
        for u in uuids:
            api.delete_instance(ctx, u)
        for u in uuids:
            try:
                api.wait(ctx, u, timeout=TIMEOUT)
            except Exception:  # noqa: BLE001 - best-effort clean-up; the fixture cleans too
                pass
    assert not cloud.db.service_get(a, COMPUTE).disabled
