"""Filters and weighers of the default scheduler, over hosts recorded in a database."""

from __future__ import annotations

import datetime as dt

import pytest

from virtsdk.cloud import make_conf
from virtsdk.context import get_admin_context
from virtsdk.db import Database
from virtsdk.db.api import connection_url
from virtsdk.db.migration import db_sync
from virtsdk.exceptions import Invalid, NoValidHost
from virtsdk.objects import Flavor, HostResources, Instance
from virtsdk.scheduler import RequestSpec, load_scheduler
from virtsdk.scheduler.filter_scheduler import FilterScheduler

SMALL = Flavor("small", 1024, 1, 10)


@pytest.fixture
def conf(tmp_path):
    return make_conf(str(tmp_path), overrides={"fake": {"fabric": "sched-unit"}})


@pytest.fixture
def db(conf):
    db_sync(connection_url(conf))
    d = Database.from_conf(conf)
    for host, mem in (("a", 4096), ("b", 8192), ("c", 2048)):
        d.service_register(host, "virtsdk-compute", "compute", {}, {})
        d.service_heartbeat(host, "virtsdk-compute", HostResources(
            hostname=host, vcpus=2, memory_mb=mem, local_gb=100).to_primitive())
    yield d
    d.dispose()


def test_entry_point_loads_filter_scheduler(conf, db):
    assert isinstance(load_scheduler(conf, db), FilterScheduler)
    conf.set_override("driver", "nope", group="scheduler")
    with pytest.raises(Invalid, match="nope"):
        load_scheduler(conf, db)


def test_ram_weigher_prefers_free_memory_and_claims_count(conf, db):
    sched = load_scheduler(conf, db)
    ctx = get_admin_context()
    assert sched.select_destinations(ctx, RequestSpec(SMALL), 3) == ["b", "a", "c"]
    for i in range(5):
        db.instance_create(Instance(f"x{i}", SMALL, host="b"))
    assert sched.select_destinations(ctx, RequestSpec(SMALL), 3) == ["a", "b", "c"]


def test_filters_remove_hosts_and_explain(conf, db):
    sched = load_scheduler(conf, db)
    ctx = get_admin_context()
    huge = Flavor("huge", 6000, 1, 10)
    assert sched.select_destinations(ctx, RequestSpec(huge), 3) == ["b"]
    spec = RequestSpec(huge, ignore_hosts=["b"])
    with pytest.raises(NoValidHost, match="IgnoreHostsFilter removed 1; RamFilter removed 2"):
        sched.select_destinations(ctx, spec)
    many_cpus = Flavor("cpus", 512, 9, 1)  # 2 vCPUs x 4.0 allocation ratio = 8
    with pytest.raises(NoValidHost, match="CoreFilter"):
        sched.select_destinations(ctx, RequestSpec(many_cpus))
    with pytest.raises(NoValidHost, match="DiskFilter"):
        sched.select_destinations(ctx, RequestSpec(Flavor("disk", 512, 1, 101)))
    assert sched.select_destinations(ctx, RequestSpec(SMALL, force_hosts=["c"])) == ["c"]


def test_down_or_disabled_hosts_are_skipped(conf, db):
    sched = load_scheduler(conf, db)
    ctx = get_admin_context()
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    db.service_update("b", "virtsdk-compute", {"updated_at": old})
    db.service_update("a", "virtsdk-compute", {"disabled": True})
    assert sched.select_destinations(ctx, RequestSpec(SMALL), 3) == ["c"]
    db.service_update("c", "virtsdk-compute", {"forced_down": True})
    with pytest.raises(NoValidHost, match="ComputeFilter removed 3"):
        sched.select_destinations(ctx, RequestSpec(SMALL))
