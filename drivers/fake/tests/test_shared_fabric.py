"""A fabric shared between processes through a directory (``[fake] fabric_dir``).

Two :class:`Fabric` objects on one directory stand for two processes here (each has
its own copy of the state and its own file handle); the multi-process cloud tests
run real separate compute processes on it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from virtsdk_fake.fabric import Capacity, Fabric
from virtsdk_fake.storage import FakeInstance

from virtsdk.exceptions import HostNotFound
from virtsdk.objects import Flavor

SMALL = Flavor("m1.small", memory_mb=64, vcpus=1, root_gb=1)
CAP = Capacity(8, 8192, 100)


def _guest(uuid: str) -> FakeInstance:
    inst = FakeInstance.build(uuid, "vm", SMALL, 1)
    inst.disks["disk"].write(4096, b"marker")
    return inst


def test_hosts_and_instances_are_seen_by_the_other_side(tmp_path: Path) -> None:
    one, two = Fabric("f", directory=str(tmp_path)), Fabric("f", directory=str(tmp_path))
    host_a = one.join("a", CAP)
    two.join("b", CAP)
    assert one.host("b").name == "b"
    with one.lock:
        host_a.instances["u1"] = _guest("u1")
    assert two.find("u1") == [("a", "instance")]
    # the other side moves it; our references stay live
    with two.lock:
        moved = two.hosts["a"].instances.pop("u1")
        two.hosts["b"].instances["u1"] = moved
    assert one.find("u1") == [("b", "instance")]
    assert one.host("a") is host_a
    with one.lock:
        assert one.hosts["b"].instances["u1"].disks["disk"].read(4096, 6) == b"marker"
    with pytest.raises(HostNotFound):
        two.host("c")


def test_objects_held_across_lock_sections_stay_the_same(tmp_path: Path) -> None:
    one, two = Fabric("f", directory=str(tmp_path)), Fabric("f", directory=str(tmp_path))
    with one.lock:
        one.join("a", CAP).instances["u1"] = _guest("u1")
    with two.lock:
        guest = two.hosts["a"].instances["u1"]
    with one.lock:
        one.hosts["a"].instances["u1"].write_memory(0, b"NEW")
    with two.lock:  # reloads into the same object
        assert guest.read_memory(0, 3) == b"NEW"
        assert two.hosts["a"].instances["u1"] is guest


def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    one = Fabric("f", directory=str(tmp_path))
    one.join("a", CAP)
    state = tmp_path / "f.fabric"
    before = state.stat().st_ino
    with one.lock:
        one.host("a")
    assert state.stat().st_ino == before


def test_two_processes_take_turns(tmp_path: Path) -> None:
    """Two real processes each add 50 instances to their own host under the lock:
    none is lost (the file lock serialises the read-modify-write)."""
    script = textwrap.dedent(f"""
        import sys
        from virtsdk_fake.fabric import Capacity, Fabric
        from virtsdk_fake.storage import FakeInstance
        from virtsdk.objects import Flavor
        fab = Fabric("f", directory={str(tmp_path)!r})
        host = sys.argv[1]
        fab.join(host, Capacity(8, 8192, 100))
        for i in range(50):
            with fab.lock:
                fab.hosts[host].instances[f"{{host}}-{{i}}"] = FakeInstance.build(
                    f"{{host}}-{{i}}", "vm", Flavor("f", memory_mb=1, vcpus=1, root_gb=0), 1)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, h]) for h in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    fab = Fabric("f", directory=str(tmp_path))
    with fab.lock:
        assert sorted(fab.hosts) == ["a", "b"]
        assert len(fab.hosts["a"].instances) == len(fab.hosts["b"].instances) == 50
