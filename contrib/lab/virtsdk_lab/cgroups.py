"""The cgroup v1 ``cpu`` controller for a lab host's libvirtd.

``ip netns exec`` mounts a fresh sysfs over ``/sys`` in the host's mount namespace,
which hides the machine's cgroup mounts; libvirtd then sees no cgroup controller and
refuses every call that needs one (``virDomainSetSchedulerParameters``: "cgroup CPU
controller is not mounted").  The launch script mounts the machine's ``cpu``
hierarchy again inside the namespace (the same controllers as the root namespace's
mount, so it is the same hierarchy) and moves the host's shell into a cgroup of its
own, ``virtsdk-lab/<netns>``: libvirtd inherits it and places every domain's cgroup
(``machine/qemu-N-<name>.libvirt-qemu/vcpuN``...) under it, so two labs running a
domain of the same name never share a cgroup.  :func:`remove` deletes that subtree
at teardown (every process in it is gone by then).

Only cgroup v1 is handled (this machine's layout); where no v1 ``cpu`` hierarchy is
mounted the lab runs without one, as before, and libvirt reports the controller as
missing.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

#: where the hosts' cgroups live, relative to the root of the cpu hierarchy
LAB_CGROUP = "virtsdk-lab"


def cpu_mount(mountinfo: str | None = None) -> tuple[Path, str] | None:
    """Mount point and controller list (e.g. ``cpu`` or ``cpu,cpuacct``) of the cgroup
    v1 hierarchy that has the ``cpu`` controller, from ``/proc/self/mountinfo``."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3 or after[0] != "cgroup":
            continue
        super_opts = after[2].split(",")
        controllers = [o for o in super_opts if o in ("cpu", "cpuacct")]
        if "cpu" in controllers:
            return Path(fields[4]), ",".join(controllers)
    return None


def host_cgroup(netns: str) -> str:
    """The host's cgroup path relative to the root of the cpu hierarchy."""
    return f"{LAB_CGROUP}/{netns}"


def script_lines(netns: str, mount: tuple[Path, str] | None = None) -> list[str]:
    """Shell lines for the host's launch script: mount the cpu hierarchy at its usual
    place, move the shell into the host's own cgroup and define ``cgns``, the prefix
    that starts a daemon in a cgroup namespace rooted there (with the hierarchy mounted
    again from inside it).  libvirt puts a domain's cgroup at the absolute path
    ``/machine/qemu-<id>-<name>.libvirt-qemu``; without the namespace that path is the
    same for every lab host, so two hosts' domains of one name and id (the source and
    the destination of a migration) shared one cgroup, and with it a CPU limit.  A
    failure leaves the host without the controller (a warning in the daemon output),
    never without a lab: ``cgns`` then runs the daemon as it is."""
    mount = mount if mount is not None else cpu_mount()
    lines = ['cgns() { "$@"; }']
    if mount is None:
        return lines
    point, controllers = mount
    q = shlex.quote
    mine = f"{point}/{host_cgroup(netns)}"
    remount = f"mount -t cgroup -o {q(controllers)} cgroup {q(str(point))}"
    inside = (f"{remount} || echo 'virtsdk-lab: no cpu cgroup in the namespace' >&2; "
              'exec "$@"')
    return [
        *lines,
        f"if mount -t tmpfs -o mode=0755 virtsdk-lab-cgroup {q(str(point.parent))} && "
        f"mkdir -p {q(str(point))} && {remount} && "
        f"mkdir -p {q(mine)} && echo $$ > {q(mine + '/cgroup.procs')} && "
        f"umount {q(str(point))}; "
        f"then cgns() {{ unshare --cgroup sh -c {q(inside)} cgns \"$@\"; }}; "
        "else echo 'virtsdk-lab: no cpu cgroup controller for libvirtd' >&2; fi",
    ]


def remove(netns: str, mount: tuple[Path, str] | None = None) -> None:
    """Delete the host's cgroup subtree, deepest first (missing or busy parts are
    left: a cgroup with a live process cannot be removed)."""
    mount = mount if mount is not None else cpu_mount()
    if mount is None:
        return
    top = mount[0] / host_cgroup(netns)
    if not top.is_dir():
        return
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, top]:
        with contextlib.suppress(OSError):
            d.rmdir()
