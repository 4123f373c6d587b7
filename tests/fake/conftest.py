"""Fixtures for the fake driver tests: a private fabric per test on a manual clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from oslo_config import cfg
from virtsdk_fake.clock import ManualClock
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.fabric import Fabric, drop_fabric, get_fabric

from virtsdk.context import RequestContext, get_admin_context
from virtsdk.live_migration import opts as lm_opts
from virtsdk.objects import Flavor, ImageMeta, Instance, NetworkInfo

SMALL = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
BIG = Flavor("m1.big", memory_mb=1024, vcpus=2, root_gb=2, ephemeral_gb=1, swap_mb=256)


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf(args=[])
    lm_opts.register_opts(conf)
    FakeDriver.name = "fake"
    group = cfg.OptGroup("fake")
    conf.register_group(group)
    conf.register_opts(FakeDriver.list_opts(), group=group)
    conf.set_override("fabric", f"test-{uuid.uuid4().hex[:8]}", group="fake")
    return conf


@pytest.fixture
def fabric(conf: cfg.ConfigOpts) -> Iterator[Fabric]:
    fab = get_fabric(conf.fake.fabric)
    fab.use_clock(ManualClock())
    yield fab
    drop_fabric(fab.name)


@pytest.fixture
def make_driver(conf: cfg.ConfigOpts, fabric: Fabric) -> Callable[[str], FakeDriver]:
    return lambda host: FakeDriver(conf, host)


@pytest.fixture
def h1(make_driver: Callable[[str], FakeDriver]) -> FakeDriver:
    return make_driver("h1")


@pytest.fixture
def h2(make_driver: Callable[[str], FakeDriver]) -> FakeDriver:
    return make_driver("h2")


@pytest.fixture
def ctx() -> RequestContext:
    return get_admin_context()


@pytest.fixture
def spawn(ctx: RequestContext) -> Callable[..., Instance]:
    """spawn(driver, flavor=SMALL, **metadata) -> a running instance on that driver."""

    def _spawn(driver: FakeDriver, flavor: Flavor = SMALL, **metadata: str) -> Instance:
        inst = Instance(name=f"vm-{uuid.uuid4().hex[:6]}", flavor=flavor,
                        image=ImageMeta(id="img-1", name="cirros"), host=driver.host,
                        metadata=dict(metadata))
        driver.spawn(ctx, inst, inst.image, NetworkInfo())
        return inst

    return _spawn


def fill(fabric: Fabric, host: str, inst: Instance) -> dict[str, str]:
    """Write recognisable bytes into the guest's memory and every disk; return the
    guest's fingerprint."""
    guest = fabric.host(host).instances[inst.uuid]
    guest.write_memory(0, b"MEM-START" + inst.uuid.encode())
    guest.write_memory(len(guest.memory) - 8, b"MEM-END!")
    for n, disk in guest.disks.items():
        disk.write(disk.size // 2, f"{n}:{inst.uuid}".encode() * 100)
        disk.write(disk.size - 5, b"TAIL!")
    return guest.fingerprint()


def disks_only(fingerprint: dict[str, str]) -> dict[str, str]:
    """The root and ephemeral disks of a fingerprint: memory does not survive a
    power-off and swap is recreated by a cold migration."""
    return {k: v for k, v in fingerprint.items()
            if k.startswith("disk:") and k != "disk:disk.swap"}
