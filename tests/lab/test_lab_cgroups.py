"""The lab host's cgroup cpu controller: which hierarchy it mounts again inside the
host's namespace, and what teardown removes (pure parts; the lab tests use it for real:
``drivers/libvirt/tests/test_live_lab.py`` sets a guest's vCPU bandwidth)."""

from __future__ import annotations

from pathlib import Path

from virtsdk_lab import cgroups

HYBRID = """\
25 24 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
COMOUNTED = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
V2_ONLY = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def test_the_cpu_hierarchy_is_found_with_its_exact_controllers():
    assert cgroups.cpu_mount(HYBRID) == (Path("/sys/fs/cgroup/cpu"), "cpu")
    assert cgroups.cpu_mount(COMOUNTED) == (Path("/sys/fs/cgroup/cpu,cpuacct"),
                                            "cpu,cpuacct")
    assert cgroups.cpu_mount(V2_ONLY) is None


def test_script_mounts_the_same_hierarchy_and_joins_the_hosts_own_cgroup():
    [plain, line] = cgroups.script_lines("vsdk7-b", (Path("/sys/fs/cgroup/cpu"), "cpu"))
    assert plain == 'cgns() { "$@"; }'  # without the controller a daemon runs as it is
    assert "mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu" in line
    assert "echo $$ > /sys/fs/cgroup/cpu/virtsdk-lab/vsdk7-b/cgroup.procs" in line
    # libvirtd runs in a cgroup namespace rooted at the host's cgroup, so its absolute
    # /machine/... paths are the host's own
    assert "cgns() { unshare --cgroup sh -c" in line
    assert line.endswith("fi")  # a failure is a warning, never a failed host start


def test_remove_deletes_the_subtree_deepest_first(tmp_path):
    root = tmp_path / "cpu"
    deep = root / "virtsdk-lab" / "vsdk7-a" / "machine" / "qemu-1-g.libvirt-qemu" / "vcpu0"
    deep.mkdir(parents=True)
    other = root / "virtsdk-lab" / "vsdk8-a"
    other.mkdir()
    cgroups.remove("vsdk7-a", (root, "cpu"))
    assert not (root / "virtsdk-lab" / "vsdk7-a").exists()
    assert other.is_dir()  # another lab's host is left alone
    cgroups.remove("vsdk7-a", (root, "cpu"))  # twice is fine
