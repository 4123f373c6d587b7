"""One host's libvirt connection and what it reports about the host.

:class:`Host` is owned by ``LibvirtDriver`` (``driver._host``) and used by every module
that talks to libvirt on this host (including ``virtsdk_libvirt.live_migration``).  It opens the
connection lazily, reopens it when libvirtd went away, and turns libvirt's answers
into virtsdk objects.  Thread safe: one connection shared by all threads (libvirt
connections are).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import libvirt

from virtsdk.exceptions import InstanceNotFound, VirtSDKError
from virtsdk.objects import HostResources
from virtsdk_libvirt import xmlutil

LOG = logging.getLogger(__name__)


def _quiet_error_handler(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


libvirt.registerErrorHandler(_quiet_error_handler, None)


class HostConnectionError(VirtSDKError):
    """libvirt on this host cannot be reached."""


def is_not_found(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


class Host:
    """The libvirt side of one compute host.

    ``uri`` is ``[libvirt] connection_uri``; ``disk_root`` is the directory whose
    filesystem holds instance disks (for the disk capacity report).
    """

    def __init__(self, uri: str, disk_root: str, retries: int = 3,
                 retry_interval: float = 1.0) -> None:
        self.uri = uri
        self.disk_root = disk_root
        self._retries = retries
        self._retry_interval = retry_interval
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------

    def get_connection(self) -> libvirt.virConnect:
        """The open connection; (re)connects when there is none or it died.

        Raises HostConnectionError naming the URI after ``retries`` failed attempts.
        """
        with self._lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                LOG.warning("libvirt connection to %s lost; reconnecting", self.uri)
                self._close_quietly(conn)
                self._conn = None
            self._conn = self._open()
            return self._conn

    def _open(self) -> libvirt.virConnect:
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                return libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                last = exc
                if attempt < self._retries:
                    time.sleep(self._retry_interval)
        raise HostConnectionError(f"cannot connect to libvirt at {self.uri}: {last}")

    @staticmethod
    def _close_quietly(conn: libvirt.virConnect) -> None:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    def close(self) -> None:
        """Close the connection (called by ``LibvirtDriver.cleanup_host``)."""
        with self._lock:
            if self._conn is not None:
                self._close_quietly(self._conn)
                self._conn = None

    # -- domains -------------------------------------------------------------------------

    def lookup(self, name: str) -> libvirt.virDomain:
        """The domain called ``name``; raises InstanceNotFound if libvirt has none."""
        try:
            return self.get_connection().lookupByName(name)
        except libvirt.libvirtError as exc:
            if is_not_found(exc):
                raise InstanceNotFound(name, self.uri) from exc
            raise

    def find(self, name: str) -> libvirt.virDomain | None:
        """Like :meth:`lookup` but returns None when the domain does not exist."""
        try:
            return self.lookup(name)
        except InstanceNotFound:
            return None

    def list_domain_names(self) -> list[str]:
        """Names of all defined and running domains."""
        return sorted(d.name() for d in self.get_connection().listAllDomains(0))

    def define(self, xml: str) -> libvirt.virDomain:
        """Define (persistently) the domain described by ``xml``."""
        return self.get_connection().defineXML(xml)

    # -- host facts ----------------------------------------------------------------------

    def capabilities(self) -> Any:
        """The parsed ``<capabilities>`` document of this host."""
        return xmlutil.parse(self.get_connection().getCapabilities())

    def cpu_info(self) -> dict[str, Any]:
        """The host CPU as libvirt describes it: arch, model, vendor, topology."""
        caps = self.capabilities()
        cpu = caps.find("host/cpu")
        if cpu is None:
            return {}
        topo = cpu.find("topology")
        return {
            "arch": xmlutil.find_text(cpu, "arch"),
            "model": xmlutil.find_text(cpu, "model"),
            "vendor": xmlutil.find_text(cpu, "vendor"),
            "topology": {k: int(v) for k, v in (topo.attrib.items() if topo is not None
                                                else []) if v.isdigit()},
            "features": sorted(f.get("name", "") for f in cpu.findall("feature")),
        }

    def host_uuid(self) -> str:
        return xmlutil.find_text(self.capabilities(), "host/uuid")

    def resources(self, hostname: str) -> HostResources:
        """Capacity and usage of this host, from libvirt (CPU, memory) and the
        filesystem of the instances directory (disk).  The vCPUs and memory used are
        those of the running guests (as in the fake driver), not the host's own use,
        so the audit can compare them with what the database claims."""
        conn = self.get_connection()
        info = conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
        total_mb = int(info[1])
        vcpus_used = memory_kib = 0
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                _state, max_kib, _kib, ncpu, _t = dom.info()
            except libvirt.libvirtError:
                continue  # the domain went away meanwhile
            vcpus_used += int(ncpu)
            memory_kib += int(max_kib)
        os.makedirs(self.disk_root, exist_ok=True)
        st = os.statvfs(self.disk_root)
        gib = 1024 ** 3
        total_gb = st.f_blocks * st.f_frsize // gib
        free_gb = st.f_bavail * st.f_frsize // gib
        return HostResources(
            hostname=hostname,
            vcpus=int(info[2]),
            memory_mb=total_mb,
            local_gb=total_gb,
            vcpus_used=vcpus_used,
            memory_mb_used=-(-memory_kib // 1024),
            local_gb_used=max(0, total_gb - free_gb),
            hypervisor_type=conn.getType(),
            hypervisor_version=int(conn.getVersion()),
            hypervisor_hostname=conn.getHostname(),
            cpu_info=self.cpu_info(),
            disk_available_least=free_gb,
        )
