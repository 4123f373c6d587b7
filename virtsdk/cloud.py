"""An embedded cloud: a conductor and N compute hosts in one process.

Who uses it: ``virtsdk demo``, the orchestration tests and benchmarks, and any
application that wants the whole stack in-process.  Every service talks over
oslo.messaging (by default ``inproc://`` with a private virtual host per cloud, so
two clouds in one process never see each other's messages) and shares one database
(SQLite under ``state_path`` unless ``[database] connection`` says otherwise).  The
compute driver is loaded by entry-point name; nothing here imports a driver.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_config import cfg

from virtsdk import conf as conf_pkg
from virtsdk import rpc
from virtsdk.api import API
from virtsdk.compute.service import ComputeService
from virtsdk.conductor.rpcapi import ConductorAPI
from virtsdk.conductor.service import ConductorService
from virtsdk.context import RequestContext, get_admin_context
from virtsdk.db import migration
from virtsdk.db.api import Database, connection_url
from virtsdk.driver import ComputeDriver
from virtsdk.plugins import COMPUTE_DRIVERS, load, register_opts


def make_conf(state_path: str | None = None, driver: str = "fake",
              overrides: Mapping[str, Mapping[str, Any]] | None = None,
              transport_url: str | None = None) -> cfg.ConfigOpts:
    """A private ConfigOpts with every virtsdk option and the driver's group
    registered.  ``overrides`` maps a group name (``DEFAULT`` for the default
    group) to ``{option: value}``.  Without a ``transport_url`` the cloud gets a
    private ``inproc://`` virtual host; on any other transport it gets topics of its
    own (``rpc_topic_prefix``) unless the overrides name a prefix."""
    conf = cfg.ConfigOpts()
    conf_pkg.register_all(conf)
    rpc.register_opts(conf)
    conf([], project="virtsdk", default_config_files=[])
    register_opts(conf, load(COMPUTE_DRIVERS, driver, ComputeDriver))
    conf.set_override("compute_driver", driver)
    conf.set_override("state_path", state_path or tempfile.mkdtemp(prefix="virtsdk-"))
    conf.set_override("transport_url",
                      transport_url or f"inproc:///cloud-{uuid.uuid4().hex[:12]}")
    for group, values in (overrides or {}).items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
    if not conf.transport_url.startswith("inproc:") and not conf.rpc_topic_prefix:
        # a broker may carry other clouds on the same virtual host: topics of our own
        conf.set_override("rpc_topic_prefix", f"cloud-{uuid.uuid4().hex[:12]}.")
    return conf


class EmbeddedCloud:
    """See the module docstring.  ``start()`` brings everything up; ``api`` is the
    :class:`~virtsdk.api.API`; ``stop_compute``/``start_compute`` restart one host
    (crash-recovery tests); ``stop()`` stops everything."""

    def __init__(self, hosts: Iterable[str] = ("host1", "host2", "host3"),
                 driver: str = "fake", conf: cfg.ConfigOpts | None = None,
                 state_path: str | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 host_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                 ) -> None:
        self.hosts = list(hosts)
        self.driver_name = driver
        #: a state directory this cloud made itself is removed by stop()
        self._own_state = conf is None and state_path is None
        self.conf = conf or make_conf(state_path, driver, overrides)
        #: per-host configuration (e.g. each libvirt host's connection URI): the
        #: cloud's options plus ``host_overrides[host]``, same bus and database
        self.host_confs: dict[str, cfg.ConfigOpts] = {}
        for host, extra in (host_overrides or {}).items():
            merged: dict[str, dict[str, Any]] = {g: dict(v) for g, v in
                                                 (overrides or {}).items()}
            for group, values in extra.items():
                merged.setdefault(group, {}).update(values)
            merged.setdefault("DEFAULT", {})["host"] = host
            merged["DEFAULT"]["rpc_topic_prefix"] = self.conf.rpc_topic_prefix
            self.host_confs[host] = make_conf(self.conf.state_path, driver, merged,
                                              transport_url=self.conf.transport_url)
        migration.db_sync(connection_url(self.conf))
        self.db = Database.from_conf(self.conf)
        self.conductor = ConductorService(self.conf, self.db)
        self.computes: dict[str, ComputeService] = {}
        self.api = API(self.conf, self.db)
        self.ctx: RequestContext = get_admin_context()

    def start(self) -> EmbeddedCloud:
        """Start the conductor and every compute.  On a broker, first check it
        answers within ``[DEFAULT] rpc_connect_timeout`` (``BrokerUnreachable``
        otherwise; oslo.messaging would wait for it forever)."""
        rpc.check_broker(self.conf)
        self.conductor.start()
        for host in self.hosts:
            self.start_compute(host)
        return self

    def start_compute(self, host: str) -> ComputeService:
        """(Re)start the compute service of ``host``: a new manager and driver object
        (the hypervisor state outlives the service), recovery, then RPC."""
        conf = self.host_confs.get(host, self.conf)
        service = ComputeService(conf, host, self.db, ConductorAPI(conf), self.driver_name)
        service.start()
        self.computes[host] = service
        return service

    def stop_compute(self, host: str, crash: bool = False) -> None:
        """Stop ``host``'s service; its guests stay where they are.  ``crash=True``
        does not wait for requests in flight and fences the stopped incarnation
        (:mod:`virtsdk.compute.fence`): its threads can no longer write a record,
        call the driver or send RPC, as with a killed process."""
        service = self.computes.pop(host)
        service.stop(graceful=not crash)

    def restart_conductor(self, crash: bool = False) -> ConductorService:
        """Stop the conductor (``crash=True``: without waiting for requests in
        flight, which then change nothing) and start a new one, which first
        recovers what the old one left."""
        self.conductor.stop(graceful=not crash)
        self.conductor = ConductorService(self.conf, self.db)
        self.conductor.start()
        return self.conductor

    def stop(self) -> None:
        """Stop every service, side by side: on a broker each RPC server takes up to
        about a second to notice (oslo.messaging's poll interval), which one after
        another added up to seconds."""
        stoppers = [threading.Thread(target=self.stop_compute, args=(host,))
                    for host in list(self.computes)]
        stoppers.append(threading.Thread(target=self.conductor.stop))
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        rpc.cleanup([self.conf, *self.host_confs.values()])
        self.db.dispose()
        if self._own_state:
            shutil.rmtree(self.conf.state_path, ignore_errors=True)

    def __enter__(self) -> EmbeddedCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
