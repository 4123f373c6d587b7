"""A seeded, repeatable fault campaign: every flow x every fault point x every fault.

The fault points of a flow are discovered, not listed: each flow runs once cleanly
and every driver step it hits (on the source host1 or the destination host2) is a
point.  At every point the campaign runs the flow again with, one case each:

* ``fault``          the step raises;
* ``fault2``         the step and the next step of the flow both raise (double fault);
* ``crash``          the host running the step is killed there (its thread dies at
                     the step) and restarted;
* ``crash-other``    the step is held while the other host is killed and restarted;
* ``crash-both``     source and destination are killed at the step (double crash);
* ``crash-conductor`` the step is held while the conductor is killed and restarted.

After each case the hypervisor (the fake fabric) is compared with the database, the
audit fixes what is safely orphaned, and the counts below are kept.  Then the
instance is deleted and the audit cleans up, so every case starts clean.  The test
prints the counts and fails unless instances lost, guests running twice, leftovers
after the audit, stuck task states and claims that outlived their flow are all 0.
``VIRTSDK_CAMPAIGN_REPORT=file`` also writes them as JSON.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from virtsdk_fake.fabric import Fabric, drop_fabric, get_fabric

from tests.orchestration.conftest import boot, make_cloud
from virtsdk.db.api import IN_PROGRESS
from virtsdk.exceptions import MigrationTimeout
from virtsdk.states import VMState

try:  # the audit is what this campaign checks; the counts work without it too
    from virtsdk.audit import audit_cloud
except ImportError:  # pragma: no cover - measuring an older tree
    audit_cloud = None

SEED = 20261126
SOURCE, DEST = "host1", "host2"
FLOWS = ("resize", "confirm", "revert", "live")
KINDS = ("fault", "fault2", "crash", "crash-other", "crash-both", "crash-conductor")
#: steps every host hits on its own (heartbeat, status): not flow steps
BACKGROUND = {"get_available_resource", "get_info", "list_instances", "init_host",
              "cleanup_host", "instance_exists"}


@dataclass(frozen=True)
class Case:
    flow: str
    kind: str
    host: str
    step: str
    then: tuple[str, str] | None = None  # the second fault of ``fault2``


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Iterator:
    c = make_cloud(tmp_path_factory.mktemp("campaign"), api={"rpc_call_timeout": 1.5})
    yield c
    get_fabric(c.conf.fake.fabric).faults.clear()
    c.stop()
    drop_fabric(c.conf.fake.fabric)


def request(cloud, flow: str, uuid: str) -> Callable[[], object]:
    api, ctx = cloud.api, cloud.ctx
    return {"resize": lambda: api.migrate(ctx, uuid, host=DEST),
            "confirm": lambda: api.confirm_resize(ctx, uuid),
            "revert": lambda: api.revert_resize(ctx, uuid),
            "live": lambda: api.live_migrate(ctx, uuid, host=DEST)}[flow]


def prepare(cloud, fabric: Fabric, flow: str):
    inst, before = boot(cloud, fabric, host=SOURCE)
    if flow in ("confirm", "revert"):
        cloud.api.migrate(cloud.ctx, inst.uuid, host=DEST)
        assert cloud.api.wait(cloud.ctx, inst.uuid).vm_state == VMState.RESIZED
    return inst, before


def fault_points(cloud, fabric: Fabric, flow: str) -> list[tuple[str, str]]:
    """(host, step) of every driver step a clean run of ``flow`` hits, in order."""
    inst, _ = prepare(cloud, fabric, flow)
    start = len(fabric.faults.calls)
    request(cloud, flow, inst.uuid)()
    cloud.api.wait(cloud.ctx, inst.uuid)
    seen: list[tuple[str, str]] = []
    for host, step in fabric.faults.calls[start:]:
        if host in (SOURCE, DEST) and step not in BACKGROUND and (host, step) not in seen:
            seen.append((host, step))
    cleanup(cloud, fabric, inst.uuid)
    return seen


def cases_of(flow: str, points: list[tuple[str, str]]) -> list[Case]:
    out = []
    for i, (host, step) in enumerate(points):
        for kind in KINDS:
            then = points[i + 1] if kind == "fault2" and i + 1 < len(points) else None
            if kind == "fault2" and then is None:
                continue
            out.append(Case(flow, kind, host, step, then))
    return out


def restart(cloud, hosts: list[str]) -> None:
    for h in hosts:
        cloud.stop_compute(h, crash=True)
    for h in hosts:
        cloud.start_compute(h)


def restart_conductor(cloud) -> None:
    if hasattr(cloud, "restart_conductor"):
        cloud.restart_conductor(crash=True)
        return
    from virtsdk.conductor.service import ConductorService  # older trees: no fence
    cloud.conductor._server.stop()  # noqa: SLF001 - do not wait for the held request
    cloud.conductor = ConductorService(cloud.conf, cloud.db)
    cloud.conductor.start()


def run_case(cloud, fabric: Fabric, case: Case) -> tuple[bool, object, dict]:
    """Run the flow with the case's fault; False if the step was never reached."""
    inst, before = prepare(cloud, fabric, case.flow)
    other = DEST if case.host == SOURCE else SOURCE
    stall = None
    if case.kind in ("fault", "fault2"):
        fabric.inject(case.step, host=case.host)
        if case.then is not None:
            fabric.inject(case.then[1], host=case.then[0])
    else:
        stall = fabric.stall(case.step, host=case.host)
        if case.kind in ("crash", "crash-both"):
            fabric.inject(case.step, host=case.host)  # the held thread dies there
    caller = threading.Thread(target=_swallow(request(cloud, case.flow, inst.uuid)))
    caller.start()
    reached = True
    if stall is not None:
        reached = stall.wait_reached(5)
        if reached:
            if case.kind == "crash":
                restart(cloud, [case.host])
            elif case.kind == "crash-other":
                restart(cloud, [other])
            elif case.kind == "crash-both":
                restart(cloud, [SOURCE, DEST])
            else:
                restart_conductor(cloud)
        stall.release()
    caller.join(30)
    fabric.faults.clear()
    return reached, inst, before


def judge(cloud, fabric: Fabric, uuid: str, before) -> Counter:
    """Hypervisor against database for one settled case."""
    counts: Counter = Counter()
    try:
        now = cloud.api.wait(cloud.ctx, uuid, timeout=15)
    except MigrationTimeout:
        counts["stuck task states"] += 1
        now = cloud.db.instance_get(uuid)
    open_migs = cloud.db.migration_get_all(instance_uuid=uuid, statuses=IN_PROGRESS)
    if open_migs and now.vm_state != VMState.RESIZED:
        counts["stuck task states"] += 1
    if now.task_state is None and getattr(cloud.db, "claim_get", None) and \
            cloud.db.claim_get(uuid) is not None:
        counts["claims left"] += 1  # a claim outlived its flow
    where = fabric.find(uuid)
    defined = [h for h, k in where if k == "instance"]
    if len(defined) > 1:
        counts["guests running twice"] += 1
    copies = [fabric.host(h).instances[uuid] for h in defined] or [
        fabric.host(h).resize_copies[uuid] for h, k in where if k == "resize_copy"]
    intact = any(all(c.disks[n].blocks == b for n, b in before["disks"].items()
                     if n in c.disks) and set(before["disks"]) <= set(c.disks)
                 for c in copies)
    if not intact:
        counts["instances lost"] += 1
    legit = {(now.host, "instance")}
    if now.vm_state == VMState.RESIZED and open_migs:
        legit.add((open_migs[-1].source_host, "resize_copy"))
    if now.vm_state == VMState.ERROR and not defined:
        legit.add((now.host, "resize_copy"))  # the kept copy waits for the operator
    extra = [w for w in where if w not in legit]
    counts["leftovers before audit"] += len(extra)
    if audit_cloud is not None:
        report = audit_cloud(cloud.conf, cloud.db, cloud.ctx, fix=True)
        counts["audit fixes"] += len(report.fixed)
        left = [d for d in report.differences
                if not (d.instance_uuid == uuid and (d.host, d.held) in legit)]
        counts["leftovers after audit"] += len(left)
    else:
        counts["leftovers after audit"] += len(extra)
    if now.vm_state == VMState.ERROR:
        counts["ended in error"] += 1
    return counts


def cleanup(cloud, fabric: Fabric, uuid: str) -> None:
    api, ctx = cloud.api, cloud.ctx
    fabric.faults.clear()
    try:
        api.wait(ctx, uuid, timeout=5)
    except MigrationTimeout:
        pass
    api.reset_state(ctx, uuid)
    try:
        api.delete_instance(ctx, uuid)
    except Exception:  # noqa: BLE001 - the audit below removes what is left
        pass
    if audit_cloud is not None:
        audit_cloud(cloud.conf, cloud.db, ctx, fix=True)
    for host in (SOURCE, DEST):  # what neither delete nor audit could remove
        h = fabric.host(host)
        with fabric.lock:
            for store in (h.instances, h.resize_copies, h.incoming_disks, h.cold_targets,
                          h.incoming_live, h.leftovers):
                store.pop(uuid, None)


def _swallow(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - refused requests are valid outcomes
            pass
    return run


def test_fault_campaign(campaign):
    cloud, fabric = campaign, get_fabric(campaign.conf.fake.fabric)
    rng = random.Random(SEED)
    cases: list[Case] = []
    for flow in FLOWS:
        cases.extend(cases_of(flow, fault_points(cloud, fabric, flow)))
    rng.shuffle(cases)  # seeded: the same order every run, flows interleaved
    totals: Counter = Counter()
    failures: list[str] = []
    started = time.monotonic()
    slow: list[tuple[float, str]] = []
    for case in cases:
        t0 = time.monotonic()
        reached, inst, before = run_case(cloud, fabric, case)
        if not reached:
            totals["fault point not reached"] += 1
        counts = judge(cloud, fabric, inst.uuid, before)
        totals.update(counts)
        totals["flows run"] += 1
        bad = {k: v for k, v in counts.items() if v and k in (
            "instances lost", "guests running twice", "leftovers after audit",
            "stuck task states", "claims left")}
        if bad:
            failures.append(f"{case}: {bad}")
        cleanup(cloud, fabric, inst.uuid)
        slow.append((round(time.monotonic() - t0, 2), f"{case.flow} {case.kind} "
                     f"{case.host} {case.step}"))
    summary = {k: totals.get(k, 0) for k in (
        "flows run", "instances lost", "guests running twice", "leftovers before audit",
        "audit fixes", "leftovers after audit", "stuck task states", "claims left",
        "ended in error",
        "fault point not reached")}
    summary["seconds"] = round(time.monotonic() - started, 1)
    print("\nfault campaign:", json.dumps(summary))
    if os.environ.get("VIRTSDK_CAMPAIGN_REPORT"):
        with open(os.environ["VIRTSDK_CAMPAIGN_REPORT"], "w") as out:
            json.dump({"summary": summary, "failures": failures,
                       "slowest": sorted(slow, reverse=True)[:25]}, out, indent=1)
    assert not failures, "\n".join(failures[:20])
