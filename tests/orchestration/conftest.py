"""Fixtures of the orchestration tests: an embedded three-host cloud on the fake driver.

One cloud per test module (its own database, virtual host and fake fabric); faults are
cleared after every test.

Back-ends: ``inproc+sqlite`` (the embedded default) and ``rabbit+postgresql`` (a real
private RabbitMQ node and PostgreSQL cluster, see :mod:`virtsdk.testing.services`).  A
module lists the back-ends its tests run on in ``BACKENDS`` (default: inproc+sqlite
only); a test may narrow or widen that with ``@pytest.mark.backends(...)``.  Each
cloud gets a fresh virtual host and database.  Tests reach into the fake fabric only to seed
guest contents, arm faults and check where the bytes are; everything else goes
through the public API.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from virtsdk_fake.fabric import Fabric, drop_fabric, get_fabric

from virtsdk.cloud import EmbeddedCloud
from virtsdk.db.api import IN_PROGRESS
from virtsdk.objects import Instance
from virtsdk.states import VMState

HOSTS = ("host1", "host2", "host3")
INPROC_SQLITE = "inproc+sqlite"
RABBIT_POSTGRESQL = "rabbit+postgresql"
ALL_BACKENDS = (INPROC_SQLITE, RABBIT_POSTGRESQL)


@dataclass
class Backend:
    """Where a test cloud's messages and records go; :meth:`overrides` gives a fresh
    virtual host and database each time (none: the cloud's own inproc vhost and
    SQLite file)."""

    name: str
    request: pytest.FixtureRequest

    def overrides(self) -> dict[str, dict[str, Any]]:
        if self.name == INPROC_SQLITE:
            return {}
        rabbit = self.request.getfixturevalue("rabbit")
        postgres = self.request.getfixturevalue("postgres")
        return {"DEFAULT": {"transport_url": rabbit.url(rabbit.new_vhost())},
                "database": {"connection": postgres.create_database()}}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): back-ends a test runs on")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else getattr(metafunc.module, "BACKENDS",
                                               (INPROC_SQLITE,))
    metafunc.parametrize("backend", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend(request.param, request)


def make_cloud(tmp_path: Any, backend: Backend | None = None,
               **overrides: dict[str, Any]) -> EmbeddedCloud:
    fabric = f"orch-{uuid.uuid4().hex[:8]}"
    base: dict[str, dict[str, Any]] = {
        "fake": {"fabric": fabric, "time_scale": 0.002, "host_vcpus": 256,
                 "host_memory_mb": 262144},
        "compute": {"report_interval": 0.5},
        # tests hold migrations in stalls for real time, which the scaled clock turns
        # into long simulated time: no completion timeout may fire meanwhile
        "live_migration": {"completion_timeout": 0},
    }
    for group, values in (backend.overrides() if backend else {}).items():
        base.setdefault(group, {}).update(values)
    for group, values in overrides.items():
        base.setdefault(group, {}).update(values)
    cloud = EmbeddedCloud(HOSTS, "fake", state_path=str(tmp_path), overrides=base)
    cloud.start()
    api, ctx = cloud.api, cloud.ctx
    api.flavor_create(ctx, "small", 256, 1, 1)
    api.flavor_create(ctx, "medium", 512, 2, 2)
    api.flavor_create(ctx, "tiny-disk", 256, 1, 0)
    api.flavor_create(ctx, "large", 4096, 2, 2)
    return cloud


@contextlib.contextmanager
def own_cloud(tmp_path: Any, backend: Backend | None = None,
              **overrides: dict[str, Any]) -> Iterator[EmbeddedCloud]:
    """A cloud of one's own (:func:`make_cloud`), stopped with its fabric after."""
    c = make_cloud(tmp_path, backend, **overrides)
    try:
        yield c
    finally:
        get_fabric(c.conf.fake.fabric).faults.clear()
        c.stop()
        drop_fabric(c.conf.fake.fabric)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, backend: Backend
          ) -> Iterator[EmbeddedCloud]:
    c = make_cloud(tmp_path_factory.mktemp("cloud"), backend)
    yield c
    c.stop()
    drop_fabric(c.conf.fake.fabric)


@pytest.fixture
def fabric(cloud: EmbeddedCloud) -> Iterator[Fabric]:
    fab = get_fabric(cloud.conf.fake.fabric)
    yield fab
    fab.faults.clear()


def boot(cloud: EmbeddedCloud, fabric: Fabric, flavor: str = "small",
         host: str | None = None, metadata: dict[str, str] | None = None
         ) -> tuple[Instance, dict[str, Any]]:
    """Boot an ACTIVE instance and write random bytes into its memory and disk.
    Returns it and the snapshot of its contents."""
    api, ctx = cloud.api, cloud.ctx
    inst = api.create_instance(ctx, f"vm-{uuid.uuid4().hex[:6]}", flavor, host=host,
                               metadata=metadata)
    inst = api.wait(ctx, inst.uuid, timeout=30)
    assert inst.vm_state == VMState.ACTIVE, inst
    guest = fabric.instance(inst.uuid)
    guest.write_memory(100, os.urandom(3000))
    guest.disks["disk"].write(8192, os.urandom(10000))
    return inst, snapshot(fabric, inst.uuid)


def snapshot(fabric: Fabric, uuid_: str) -> dict[str, Any]:
    guest = fabric.instance(uuid_)
    return {"memory": guest.memory_digest(),
            "disks": {n: dict(d.blocks) for n, d in guest.disks.items() if n != "disk.swap"}}


def authoritative(fabric: Fabric, uuid_: str) -> tuple[str, Any]:
    """The one copy that holds the instance: the defined instance, else (ERROR after
    a failed revert) the source's kept copy.  Asserts there is exactly one."""
    where = fabric.find(uuid_)
    defined = [h for h, kind in where if kind == "instance"]
    if defined:
        assert len(defined) == 1, where
        host = defined[0]
        return host, fabric.host(host).instances[uuid_]
    kept = [h for h, kind in where if kind == "resize_copy"]
    assert len(kept) == 1, where
    return kept[0], fabric.host(kept[0]).resize_copies[uuid_]


def check_intact(cloud: EmbeddedCloud, fabric: Fabric, inst: Instance,
                 before: dict[str, Any], memory: bool) -> Instance:
    """The instance is settled (no task, no migration in progress), exists on
    exactly one host, the one the database names (anything else only in ERROR, kept
    for the operator), and its disk bytes (and memory, for live moves) are intact."""
    now = cloud.db.instance_get(inst.uuid)
    assert now.task_state is None, now
    assert not cloud.db.migration_get_all(instance_uuid=inst.uuid, statuses=IN_PROGRESS) \
        or now.vm_state == VMState.RESIZED
    host, guest = authoritative(fabric, inst.uuid)
    assert host == now.host, (host, now.host, fabric.find(inst.uuid))
    if now.vm_state == VMState.RESIZED:  # the source keeps its copy until confirm
        kept = [(h, k) for h, k in fabric.find(inst.uuid) if k != "instance"]
        assert [k for _, k in kept] == ["resize_copy"], fabric.find(inst.uuid)
    elif now.vm_state != VMState.ERROR:
        assert fabric.find(inst.uuid) == [(now.host, "instance")]
    for name, blocks in before["disks"].items():
        assert guest.disks[name].blocks == blocks, f"disk {name} of {inst.uuid} changed"
    if memory:
        assert guest.memory_digest() == before["memory"], "guest memory changed"
    return now


def wait_status(cloud: EmbeddedCloud, inst: Instance, migration_id: int,
                leave: tuple[Any, ...], timeout: float = 30.0) -> Any:
    """The migration's status once it is no longer one of ``leave``."""
    deadline = time.monotonic() + timeout
    while True:
        status = cloud.api.get_migration(cloud.ctx, inst.uuid, migration_id).status
        if status not in leave or time.monotonic() > deadline:
            return status
        time.sleep(0.002)


def usage(cloud: EmbeddedCloud) -> dict[str, Any]:
    return {h: cloud.db.host_usage(h) for h in cloud.hosts}
