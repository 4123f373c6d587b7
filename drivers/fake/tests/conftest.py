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

from .guest_data import SMALL


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
