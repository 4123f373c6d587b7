"""Hostile input to the API: a typed Invalid / NotFound error, and nothing written.

Every user-supplied field has one rule (:mod:`virtsdk.api.fields`); these cases
break each rule and check the error's class, that its message is short and
traceback-free, and that no table changed.  The rules are the same whichever
database is behind the API (SQLite would otherwise store a 10 KB name; PostgreSQL
would raise its driver's StringDataRightTruncation / NumericValueOutOfRange).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from virtsdk_fake.fabric import drop_fabric

from virtsdk.api import fields
from virtsdk.context import RequestContext
from virtsdk.db.models import (
    ActionEventRow,
    ActionRow,
    Base,
    FlavorRow,
    InstanceRow,
    MigrationRow,
)
from virtsdk.exceptions import (
    FlavorNotFound,
    HostNotFound,
    InstanceNotFound,
    Invalid,
    InvalidFlavor,
    InvalidHostname,
    InvalidInput,
    MigrationNotFound,
    VirtSDKError,
)
from virtsdk.objects import ImageMeta
from virtsdk.validation import INT32_MAX, INT64_MAX

from .conftest import boot, make_cloud

TABLES = (FlavorRow, InstanceRow, MigrationRow, ActionRow, ActionEventRow)
GOOD_UUID = str(uuid.uuid4())

HOSTILE_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("two\nlines", id="newline"),
    pytest.param("cr\rhere", id="cr"),
    pytest.param("tab\there", id="tab"),
    pytest.param("esc\x1b[31m", id="ansi-escape"),
    pytest.param("del\x7f", id="del"),
    pytest.param("c1\x85", id="c1-next-line"),
    pytest.param("line\u2028sep", id="line-separator"),
    pytest.param("lone\ud800surrogate", id="lone-surrogate"),
    pytest.param(" leading", id="leading-space"),
    pytest.param("trailing ", id="trailing-space"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
]

BAD_SIZES = [
    pytest.param("memory_mb", 0, id="memory-zero"),
    pytest.param("memory_mb", -1, id="memory-negative"),
    pytest.param("memory_mb", INT32_MAX + 1, id="memory-over-int32"),
    pytest.param("memory_mb", 2**63, id="memory-2**63"),
    pytest.param("memory_mb", 1.5, id="memory-float"),
    pytest.param("memory_mb", "512", id="memory-str"),
    pytest.param("memory_mb", True, id="memory-bool"),
    pytest.param("vcpus", 0, id="vcpus-zero"),
    pytest.param("vcpus", 2**31, id="vcpus-over-int32"),
    pytest.param("vcpus", None, id="vcpus-none"),
    pytest.param("root_gb", -1, id="root-negative"),
    pytest.param("root_gb", 2**40, id="root-huge"),
    pytest.param("ephemeral_gb", -5, id="ephemeral-negative"),
    pytest.param("ephemeral_gb", float("nan"), id="ephemeral-nan"),
    pytest.param("swap_mb", 2**64, id="swap-2**64"),
]

BAD_MIGRATION_IDS = [
    pytest.param(2**63, MigrationNotFound, id="2**63"),
    pytest.param(2**64 + 7, MigrationNotFound, id="2**64+7"),
    pytest.param(-1, MigrationNotFound, id="negative"),
    pytest.param(0, MigrationNotFound, id="zero"),
    pytest.param(INT64_MAX, MigrationNotFound, id="int64-max"),
    pytest.param(INT32_MAX + 1, MigrationNotFound, id="int32-max+1"),
    pytest.param("1", InvalidInput, id="str"),
    pytest.param(1.0, InvalidInput, id="float"),
    pytest.param(None, InvalidInput, id="none"),
    pytest.param(True, InvalidInput, id="bool"),
    pytest.param([1], InvalidInput, id="list"),
]

BAD_UUIDS = [
    pytest.param("no-such-uuid", InstanceNotFound, id="not-a-uuid"),
    pytest.param(GOOD_UUID + "\x00", InstanceNotFound, id="nul"),
    pytest.param(GOOD_UUID + "\n", InstanceNotFound, id="newline"),
    pytest.param("x" * 10_000, InstanceNotFound, id="10k"),
    pytest.param("\ud800" * 36, InstanceNotFound, id="surrogates"),
    pytest.param(None, InvalidInput, id="none"),
    pytest.param(12, InvalidInput, id="int"),
    pytest.param(b"bytes", InvalidInput, id="bytes"),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Any]:
    """The orchestration cloud on SQLite and on PostgreSQL: the same rules, the same
    errors (PostgreSQL alone would raise StringDataRightTruncation for a long name)."""
    overrides: dict[str, dict[str, Any]] = {}
    if request.param == "postgresql":
        # the session's private PostgreSQL cluster (virtsdk.testing.services)
        postgres = request.getfixturevalue("postgres")
        overrides["database"] = {"connection": postgres.create_database()}
    c = make_cloud(tmp_path_factory.mktemp(f"validation-{request.param}"), **overrides)
    yield c
    c.stop()
    c.db.dispose()
    drop_fabric(c.conf.fake.fabric)


def counts(cloud: Any) -> dict[str, int]:
    with cloud.db.engine.connect() as conn:
        return {t.__tablename__: conn.scalar(select(func.count()).select_from(t))
                for t in TABLES}


def refused(cloud: Any, call: Callable[[], Any], error: type[BaseException]) -> BaseException:
    """``call`` raises ``error`` (a typed, short VirtSDKError) and writes nothing."""
    before = counts(cloud)
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, VirtSDKError)
    text = str(info.value)
    assert "Traceback" not in text and len(text) < 300, text
    assert counts(cloud) == before
    return info.value


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_instance_names_are_refused(cloud, name):
    err = refused(cloud, lambda: cloud.api.create_instance(cloud.ctx, name, "small"),
                  InvalidInput)
    assert err.field == "instance name"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_flavor_names_are_refused(cloud, name):
    err = refused(cloud, lambda: cloud.api.flavor_create(cloud.ctx, name, 256, 1, 1),
                  InvalidFlavor)
    assert isinstance(err, InvalidInput) and err.field == "flavor name"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_flavor_lookups_are_not_found_or_invalid(cloud, name):
    expected = FlavorNotFound if isinstance(name, str) else InvalidInput
    refused(cloud, lambda: cloud.api.flavor_get(cloud.ctx, name), expected)
    refused(cloud, lambda: cloud.api.create_instance(cloud.ctx, "ok", name), expected)


def test_the_longest_names_the_columns_hold_are_accepted(cloud, fabric):
    longest = fields.FIELDS["flavor name"].max_len
    assert longest == FlavorRow.__table__.c.name.type.length == 255
    name = "f" * longest
    cloud.api.flavor_create(cloud.ctx, name, 256, 1, 1)
    assert cloud.api.flavor_get(cloud.ctx, name).name == name
    vm = cloud.api.create_instance(cloud.ctx, "é" * 255, name)
    assert cloud.api.wait(cloud.ctx, vm.uuid, timeout=30).name == "é" * 255
    cloud.api.delete_instance(cloud.ctx, vm.uuid)


# -- flavor sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(("attr", "value"), BAD_SIZES)
def test_flavor_sizes_out_of_range_are_refused(cloud, attr, value):
    sizes = {"memory_mb": 256, "vcpus": 1, "root_gb": 1, "ephemeral_gb": 0, "swap_mb": 0}
    sizes[attr] = value
    err = refused(cloud, lambda: cloud.api.flavor_create(cloud.ctx, f"f-{attr}", **sizes),
                  InvalidFlavor)
    assert err.field == f"flavor {attr}"


def test_flavor_sizes_at_the_limits_are_accepted(cloud):
    cloud.api.flavor_create(cloud.ctx, "edge-max", INT32_MAX, INT32_MAX, INT32_MAX,
                            INT32_MAX, INT32_MAX)
    assert cloud.api.flavor_get(cloud.ctx, "edge-max").memory_mb == INT32_MAX


# -- ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mid", "error"), BAD_MIGRATION_IDS)
def test_migration_ids_out_of_range_or_type(cloud, fabric, mid, error):
    api, ctx = cloud.api, cloud.ctx
    calls = [
        lambda: api.get_migration(ctx, GOOD_UUID, mid),
        lambda: api.get_migration_details(ctx, mid),
    ]
    for call in calls:
        refused(cloud, call, error)


@pytest.mark.parametrize(("mid", "error"), BAD_MIGRATION_IDS[:3] + BAD_MIGRATION_IDS[5:7])
def test_abort_and_force_complete_with_bad_migration_ids(cloud, fabric, mid, error):
    inst, _ = boot(cloud, fabric)
    try:
        for call in (cloud.api.live_migration_abort,
                     cloud.api.live_migration_force_complete):
            refused(cloud, lambda call=call: call(cloud.ctx, inst.uuid, mid), error)
    finally:
        cloud.api.delete_instance(cloud.ctx, inst.uuid)


@pytest.mark.parametrize(("value", "error"), BAD_UUIDS)
def test_instance_uuids_that_cannot_exist(cloud, value, error):
    api, ctx = cloud.api, cloud.ctx
    for call in (
        lambda: api.show_instance(ctx, value),
        lambda: api.delete_instance(ctx, value),
        lambda: api.resize(ctx, value, "medium"),
        lambda: api.migrate(ctx, value),
        lambda: api.live_migrate(ctx, value),
        lambda: api.confirm_resize(ctx, value),
        lambda: api.revert_resize(ctx, value),
        lambda: api.reset_state(ctx, value),
        lambda: api.list_actions(ctx, value),
        lambda: api.get_migration(ctx, value, 1),
        lambda: api.live_migration_abort(ctx, value, 1),
    ):
        refused(cloud, call, error)
    if value is not None:  # None is "any instance" there
        refused(cloud, lambda: api.list_migrations(ctx, instance_uuid=value), error)


# -- hosts, metadata, images, enums ------------------------------------------------------


@pytest.mark.parametrize("host", ["", "a b", "h\x00", "h\n", "x" * 300, "../etc", "h;rm"])
def test_hostile_hostnames(cloud, fabric, host):
    api, ctx = cloud.api, cloud.ctx
    refused(cloud, lambda: api.create_instance(ctx, "vm", "small", host=host),
            InvalidHostname)
    refused(cloud, lambda: api.list_instances(ctx, host=host), InvalidHostname)
    refused(cloud, lambda: api.list_migrations(ctx, host=host), InvalidHostname)


def test_unknown_but_wellformed_host_is_not_found(cloud):
    refused(cloud, lambda: cloud.api.create_instance(cloud.ctx, "vm", "small",
                                                     host="nowhere"), HostNotFound)


@pytest.mark.parametrize("metadata", [
    pytest.param({"k\x00": "v"}, id="nul-key"),
    pytest.param({"": "v"}, id="empty-key"),
    pytest.param({"k": "v\x00"}, id="nul-value"),
    pytest.param({"k" * 256: "v"}, id="long-key"),
    pytest.param({"k": "v" * 256}, id="long-value"),
    pytest.param({f"k{i}": "v" for i in range(129)}, id="129-items"),
    pytest.param({"k": 1}, id="int-value"),
    pytest.param({1: "v"}, id="int-key"),
    pytest.param(["k", "v"], id="list"),
])
def test_hostile_metadata(cloud, metadata):
    refused(cloud, lambda: cloud.api.create_instance(cloud.ctx, "vm", "small",
                                                     metadata=metadata), InvalidInput)


@pytest.mark.parametrize("image", [
    pytest.param(ImageMeta(id=""), id="empty-id"),
    pytest.param(ImageMeta(id="i\x00"), id="nul-id"),
    pytest.param(ImageMeta(id="i", location="/x\n/y"), id="newline-location"),
    pytest.param(ImageMeta(id="i", size=-1), id="negative-size"),
    pytest.param(ImageMeta(id="i", size=2**63), id="size-2**63"),
    pytest.param(ImageMeta(id="i", properties={"p": "\x00"}), id="nul-property"),
    pytest.param({"id": "i"}, id="dict"),
])
def test_hostile_images(cloud, image):
    refused(cloud, lambda: cloud.api.create_instance(cloud.ctx, "vm", "small",
                                                     image=image), InvalidInput)


def test_enum_and_flag_arguments(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    refused(cloud, lambda: api.list_migrations(ctx, status="nonsense"), InvalidInput)
    refused(cloud, lambda: api.list_migrations(ctx, migration_type="x\x00"), InvalidInput)
    refused(cloud, lambda: api.wait(ctx, GOOD_UUID, timeout=float("inf")), InvalidInput)
    refused(cloud, lambda: api.wait(ctx, GOOD_UUID, poll=0), InvalidInput)
    inst, _ = boot(cloud, fabric)
    try:
        refused(cloud, lambda: api.reset_state(ctx, inst.uuid, vm_state="bogus"),
                InvalidInput)
        refused(cloud, lambda: api.live_migrate(ctx, inst.uuid, disk_over_commit="yes"),
                InvalidInput)
        refused(cloud, lambda: api.live_migrate(ctx, inst.uuid, block_migration="maybe"),
                Invalid)
    finally:
        api.delete_instance(ctx, inst.uuid)


def test_every_rule_is_declared_once():
    """The API's rules live in one table; every table column they guard fits."""
    assert fields.FIELDS["instance name"].max_len == InstanceRow.__table__.c.name.type.length
    assert fields.FIELDS["instance uuid"].max_len == InstanceRow.__table__.c.uuid.type.length
    assert set(Base.metadata.tables) >= {t.__tablename__ for t in TABLES}


@pytest.mark.parametrize("ctx", [
    pytest.param(RequestContext(request_id="r" * 65), id="long-request-id"),
    pytest.param(RequestContext(request_id="req-1\nforged"), id="newline-request-id"),
    pytest.param(RequestContext(request_id=""), id="empty-request-id"),
    pytest.param(RequestContext(user_id="u\x00"), id="nul-user"),
    pytest.param(RequestContext(project_id="p" * 65), id="long-project"),
    pytest.param({"request_id": "req-1"}, id="dict"),
    pytest.param(None, id="none"),
])
def test_hostile_request_contexts_record_nothing(cloud, fabric, ctx):
    """The context is written with the instance action (String(64) columns)."""
    api = cloud.api
    refused(cloud, lambda: api.create_instance(ctx, "vm", "small"), InvalidInput)
    inst, _ = boot(cloud, fabric)
    try:
        for call in (lambda: api.live_migrate(ctx, inst.uuid),
                     lambda: api.migrate(ctx, inst.uuid),
                     lambda: api.delete_instance(ctx, inst.uuid),
                     lambda: api.reset_state(ctx, inst.uuid)):
            refused(cloud, call, InvalidInput)
        assert api.show_instance(cloud.ctx, inst.uuid).task_state is None
    finally:
        api.delete_instance(cloud.ctx, inst.uuid)
