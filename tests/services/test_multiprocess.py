"""A cloud of separate processes on a real (private) RabbitMQ: ``virtsdk-conductor``
and one ``virtsdk-compute`` per host on the fake driver (fabric shared through a
directory), driven by the operator CLI ``virtsdk --config-file ... server ...``."""

from __future__ import annotations

import signal
import subprocess
import time

from virtsdk_fake.fabric import Fabric
from virtsdk_lab.deployment import LabDeployment

from tests.services.conftest import BIN, ProcessCloud


def cli(cloud: ProcessCloud | LabDeployment, *args: str,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(BIN / "virtsdk"), "--config-file", str(cloud.conf), *args],
                         capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"virtsdk {' '.join(args)} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}\n--- logs ---\n"
                             + "\n".join(cloud.log(n) for n in cloud.procs))
    return res


def manage(cloud: ProcessCloud, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "virtsdk-manage"), "--config-file", str(cloud.conf),
                           *args], capture_output=True, text=True, timeout=120)


def fabric_of(cloud: ProcessCloud) -> Fabric:
    text = cloud.conf.read_text()
    name = text.split("fabric = ")[1].split("\n")[0]
    return Fabric(name, directory=str(cloud.root / "fabric"))


def test_flows_across_processes(process_cloud: ProcessCloud) -> None:
    cloud = process_cloud
    cloud.start_all()
    cli(cloud, "flavor", "create", "small", "--ram", "256", "--vcpus", "1", "--disk", "1")
    cli(cloud, "flavor", "create", "big", "--ram", "512", "--vcpus", "2", "--disk", "2")
    uuid = cli(cloud, "server", "create", "web", "--flavor", "small", "--host", "mpA",
               "--wait").stdout.split()[0]
    fabric = fabric_of(cloud)
    assert fabric.find(uuid) == [("mpA", "instance")]
    with fabric.lock:
        fabric.instance(uuid).disks["disk"].write(8192, b"survives every move")
        fabric.instance(uuid).write_memory(0, b"live memory")

    out = cli(cloud, "server", "live-migrate", uuid, "--wait").stdout
    assert "completed" in out
    assert fabric.find(uuid) == [("mpB", "instance")]
    with fabric.lock:
        assert fabric.instance(uuid).read_memory(0, 11) == b"live memory"

    cli(cloud, "server", "resize", uuid, "big", "--wait")
    assert fabric.find(uuid) == [("mpA", "instance"), ("mpB", "resize_copy")]
    cli(cloud, "server", "confirm", uuid, "--wait")
    assert fabric.find(uuid) == [("mpA", "instance")]

    cli(cloud, "server", "migrate", uuid, "--wait")
    cli(cloud, "server", "revert", uuid, "--wait")
    assert fabric.find(uuid) == [("mpA", "instance")]
    with fabric.lock:
        assert fabric.instance(uuid).disks["disk"].read(8192, 19) == b"survives every move"

    listing = cli(cloud, "migration", "list", "--instance", uuid).stdout
    for status in ("completed", "confirmed", "reverted"):
        assert status in listing
    services = manage(cloud, "service", "list")
    assert services.returncode == 0, services.stderr
    assert services.stdout.count(" up ") >= 3


def test_down_host_is_skipped_and_sigterm_exits(process_cloud: ProcessCloud) -> None:
    cloud = process_cloud
    cloud.start_all()
    cli(cloud, "flavor", "create", "small", "--ram", "256", "--vcpus", "1", "--disk", "1")
    cloud.kill("mpB")  # kill -9 of the whole service (master and worker)
    deadline = time.monotonic() + 30
    while "mpB" in cloud.up() and time.monotonic() < deadline:
        time.sleep(0.2)
    listing = manage(cloud, "service", "list").stdout
    row = next(line for line in listing.splitlines() if "mpB" in line)
    assert " down " in row
    for i in range(3):  # the scheduler never picks the dead host
        uuid = cli(cloud, "server", "create", f"vm{i}", "--flavor", "small",
                   "--wait").stdout.split()[0]
        assert fabric_of(cloud).find(uuid) == [("mpA", "instance")]
    failed = cli(cloud, "server", "live-migrate", uuid, "--host", "mpB", check=False)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and "error:" in failed.stderr
    # SIGHUP: a mutable option changes in place (the worker is not restarted)
    worker_pids = _children(cloud.procs["mpA"].pid)
    with open(cloud.root / "mpA.conf", "a") as fh:
        fh.write("[compute]\nmax_concurrent_live_migrations_inbound = 7\n")
    cloud.kill("mpA", signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        svc = cloud.db.service_get("mpA")
        if svc is not None and svc.limits.get("max_inbound") == 7:
            break
        time.sleep(0.2)
    assert cloud.db.service_get("mpA").limits["max_inbound"] == 7, cloud.log("mpA")
    assert _children(cloud.procs["mpA"].pid) == worker_pids
    # SIGTERM: the service stops and exits 0 without being killed
    cloud.kill("mpA", signal.SIGTERM)
    assert cloud.procs["mpA"].wait(timeout=60) == 0


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(x) for x in out.stdout.split()}
