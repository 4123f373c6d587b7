"""Configure and start virtlogd + libvirtd inside a lab host.

Without systemd, each host gets a shell started as
``ip netns exec <ns> unshare --mount --uts --propagation private sh -c <script>``.
The script names the host, mounts a tmpfs over ``/run``, bind-mounts the host's own
``/etc/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``, ``/var/cache/libvirt``
and ``/etc/hosts`` (so every lab host name resolves, which libvirt needs for the
migration URI it hands to the source), mounts the cgroup ``cpu`` controller and joins
the host's own cgroup (:mod:`virtsdk_lab.cgroups`: libvirt's vCPU bandwidth calls need
it), then starts ``virtlogd -d`` and
``libvirtd -d --listen``.  The daemons keep the namespaces alive after the shell
exits.  libvirtd is pinned to CPU 0: libvirt validates its cached QEMU probe results
against the host CPUID, which differs per core on this kind of VM (APIC id), so an
unpinned libvirtd re-probes QEMU (about 8 s) on half of its starts.  QEMU processes
do not inherit the pin (libvirt gives a domain without a cpuset every host CPU).
Called by :meth:`Lab.up` in the root namespace.
"""

from __future__ import annotations

import grp
import pwd
import shlex
import socket
import time
from pathlib import Path

from virtsdk_lab import cgroups
from virtsdk_lab.commands import run
from virtsdk_lab.errors import LabError
from virtsdk_lab.host import LIBVIRT_TCP_PORT, LabHost

READY_TIMEOUT_S = 30.0
MOUNTED_DIRS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
QEMU_USER = "libvirt-qemu"


def ensure_system_accounts() -> None:
    """Create the ``libvirt-qemu`` user and group if missing (libvirtd expects them).

    Safe when several labs start at once: a lost ``groupadd``/``useradd`` race is
    fine as long as the account exists afterwards.
    """
    if not _group_exists(QEMU_USER):
        result = run(["groupadd", "--system", QEMU_USER], check=False)
        if not _group_exists(QEMU_USER):
            raise LabError(f"cannot create group {QEMU_USER}: {result.stderr.strip()}")
    if not _user_exists(QEMU_USER):
        result = run(["useradd", "--system", "--gid", QEMU_USER, "--no-create-home",
                      "--shell", "/usr/sbin/nologin", QEMU_USER], check=False)
        if not _user_exists(QEMU_USER):
            raise LabError(f"cannot create user {QEMU_USER}: {result.stderr.strip()}")
    for target in MOUNTED_DIRS.values():
        Path(target).mkdir(parents=True, exist_ok=True)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def libvirtd_conf(host: LabHost) -> str:
    return "\n".join([
        "listen_tls = 0",
        "listen_tcp = 1",
        'auth_tcp = "none"',
        f'listen_addr = "{host.address}"',
        f'host_uuid = "{host.uuid}"',
        'unix_sock_group = "root"',
        'unix_sock_rw_perms = "0770"',
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
        "",
    ])


def qemu_conf() -> str:
    return "\n".join([
        'user = "root"',
        'group = "root"',
        'security_driver = "none"',
        "remember_owner = 0",
        "",
    ])


def hosts_file(hosts: list[LabHost]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    lines += [f"{h.address} {h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def prepare_host_dir(host: LabHost, peers: list[LabHost]) -> None:
    """Create the host's private directories and write its configuration files."""
    for sub in (*MOUNTED_DIRS, "instances"):
        (host.host_dir / sub).mkdir(parents=True, exist_ok=True)
    (host.host_dir / "log" / "qemu").mkdir(exist_ok=True)
    etc = host.host_dir / "etc"
    (etc / "libvirtd.conf").write_text(libvirtd_conf(host))
    (etc / "qemu.conf").write_text(qemu_conf())
    (etc / "virtlogd.conf").write_text('log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n')
    (etc / "libvirt.conf").write_text("")
    (host.host_dir / "hosts").write_text(hosts_file(peers))


def launch_script(host: LabHost) -> str:
    q = shlex.quote
    steps = [
        "set -e",
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        f"hostname {q(host.hostname)}",
        "mount -t tmpfs -o mode=0755 virtsdk-lab-run /run",
        "mkdir -p /run/lock",
    ]
    for sub, target in MOUNTED_DIRS.items():
        steps.append(f"mount --bind {q(str(host.host_dir / sub))} {q(target)}")
    steps.append(f"mount --bind {q(str(host.host_dir / 'hosts'))} /etc/hosts")
    steps += cgroups.script_lines(host.netns)
    daemon_log = q(str(host.host_dir / "daemons.out"))
    steps.append(
        f"virtlogd -d -p {q(str(host.virtlogd_pidfile))} </dev/null >>{daemon_log} 2>&1"
    )
    steps.append(
        f"cgns taskset -c 0 libvirtd -d --listen -p {q(str(host.libvirtd_pidfile))} "
        f"</dev/null >>{daemon_log} 2>&1"
    )
    return "\n".join(steps) + "\n"


def start_daemons(host: LabHost) -> None:
    """Start the host's virtlogd and libvirtd and wait until libvirtd answers on TCP.

    Raises :class:`LabError` (with the tail of the daemon logs) if it does not.
    """
    run([*host.exec_prefix, "unshare", "--mount", "--uts", "--propagation", "private",
         "sh", "-c", launch_script(host)], timeout=60)
    wait_listening(host, READY_TIMEOUT_S)


def wait_listening(host: LabHost, timeout: float = READY_TIMEOUT_S) -> None:
    """Block until ``host``'s libvirtd accepts TCP connections on its address."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.address, LIBVIRT_TCP_PORT), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(
                    f"libvirtd of {host.name} did not listen on {host.address}:"
                    f"{LIBVIRT_TCP_PORT} within {timeout:.0f} s\n{daemon_log_tail(host)}"
                ) from None
            time.sleep(0.1)


def daemon_log_tail(host: LabHost, lines: int = 20) -> str:
    """Last lines of the host's daemon output and libvirtd.log, for error messages."""
    parts = []
    for path in (host.host_dir / "daemons.out", host.log_dir / "libvirtd.log"):
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"--- {path}\n" + "\n".join(text))
    return "\n".join(parts)
