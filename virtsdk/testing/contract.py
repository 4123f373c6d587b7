"""The driver contract tests: a pytest mixin every driver can run against itself.

A driver author subclasses :class:`DriverContractTests` in a test module and provides a
``driver_factory`` fixture: a callable that returns the driver serving a given host
name, where all hosts it serves can reach each other (two hosts are used)::

    from virtsdk.testing.contract import DriverContractTests

    class TestMyDriverContract(DriverContractTests):
        @pytest.fixture
        def driver_factory(self, tmp_path):
            conf = make_conf(tmp_path)
            return lambda host: MyDriver(conf, host)

The lifecycle checks always run; the cold-migration, resize and live-migration checks
run when the driver's :class:`~virtsdk.driver.Capabilities` claim the feature (and are
skipped, saying why, otherwise).  Override ``contract_hosts``, ``contract_flavor``,
``contract_bigger_flavor`` or ``contract_image`` to fit the hypervisor.  Override
``slow_live_migration`` to return a callable that makes the given instance's next
live migration run until aborted (e.g. a dirty rate above the bandwidth) to enable
the abort and force-complete checks.  Every check spawns at most one guest and
removes it at the end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from virtsdk.context import RequestContext, get_admin_context
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    DestinationDiskExists,
    InstanceNotFound,
    InvalidHostname,
    LiveMigrationAborted,
    ResizeShrinkNotAllowed,
)
from virtsdk.objects import (
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.states import MigrationType, PowerState

DriverFactory = Callable[[str], ComputeDriver]

#: capability flag -> driver methods a driver claiming it must override
CAPABILITY_METHODS: dict[str, tuple[str, ...]] = {
    "supports_cold_migration": ("migrate_disk_and_power_off", "finish_migration",
                                "confirm_migration", "finish_revert_migration"),
    "supports_resize": ("migrate_disk_and_power_off", "finish_migration"),
    "supports_live_migration": ("check_can_live_migrate_destination",
                                "check_can_live_migrate_source", "pre_live_migration",
                                "live_migration"),
    "supports_live_migration_abort": ("live_migration_abort",),
    "supports_live_migration_force_complete": ("live_migration_force_complete",),
}

#: the two drivers (source, destination) a contract test runs on
Pair = tuple[ComputeDriver, ComputeDriver]


@dataclass
class MethodRecorder:
    """Records calls of ``post_method`` / ``recover_method`` given to live_migration."""

    calls: list[str] = field(default_factory=list)

    def post(self, context: RequestContext, instance: Instance, dest: str,
             block_migration: bool, migrate_data: LiveMigrateData) -> None:
        self.calls.append("post")

    def recover(self, context: RequestContext, instance: Instance, dest: str,
                migrate_data: LiveMigrateData) -> None:
        self.calls.append("recover")


class DriverContractTests:
    """Generic checks of the ComputeDriver contract; see the module docstring."""

    # -- fixtures a driver may override --------------------------------------------------

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        raise NotImplementedError("subclasses provide a driver_factory fixture")

    @pytest.fixture
    def contract_hosts(self) -> tuple[str, str]:
        return ("contract-src", "contract-dst")

    @pytest.fixture
    def contract_flavor(self) -> Flavor:
        return Flavor("contract.small", memory_mb=256, vcpus=1, root_gb=1)

    @pytest.fixture
    def contract_bigger_flavor(self) -> Flavor:
        return Flavor("contract.big", memory_mb=512, vcpus=2, root_gb=2)

    @pytest.fixture
    def contract_image(self) -> ImageMeta:
        return ImageMeta(id="contract-image", name="contract-image")

    @pytest.fixture
    def slow_live_migration(self) -> Callable[[ComputeDriver, Instance], None] | None:
        return None

    # -- plumbing ------------------------------------------------------------------------

    @pytest.fixture
    def ctx(self) -> RequestContext:
        return get_admin_context()

    @pytest.fixture
    def pair(self, driver_factory: DriverFactory, contract_hosts: tuple[str, str]
             ) -> tuple[ComputeDriver, ComputeDriver]:
        src, dst = (driver_factory(h) for h in contract_hosts)
        return src, dst

    @pytest.fixture
    def guest(self, pair: Pair, ctx: RequestContext,
              contract_flavor: Flavor, contract_image: ImageMeta) -> Iterator[Instance]:
        """One running instance on the source host, removed from both hosts after."""
        src, dst = pair
        inst = Instance(name=f"contract-{uuid.uuid4().hex[:8]}", flavor=contract_flavor,
                        image=contract_image, host=src.host)
        src.spawn(ctx, inst, contract_image, NetworkInfo())
        yield inst
        for drv in (dst, src):
            try:
                drv.destroy(ctx, inst, NetworkInfo())
            except Exception:  # noqa: BLE001, S110 - best-effort cleanup
                pass
            try:
                drv.confirm_migration(ctx, _migration(inst, src, dst), inst, NetworkInfo())
            except Exception:  # noqa: BLE001, S110 - best-effort cleanup
                pass

    @staticmethod
    def _require(driver: ComputeDriver, capability: str) -> None:
        if not getattr(driver.capabilities, capability):
            pytest.skip(f"driver {driver.name!r} does not claim {capability}")

    # -- declarations --------------------------------------------------------------------

    def test_capabilities_are_backed_by_methods(self, pair: Pair
                                                ) -> None:
        driver = pair[0]
        implemented = set(type(driver).implemented_methods())
        for capability, methods in CAPABILITY_METHODS.items():
            if getattr(driver.capabilities, capability):
                missing = [m for m in methods if m not in implemented]
                assert not missing, f"{capability} claimed but {missing} not implemented"

    def test_host_resources_are_sane(self, pair: Pair) -> None:
        res = pair[0].get_available_resource()
        assert isinstance(res, HostResources)
        assert res.vcpus > 0 and res.memory_mb > 0 and res.local_gb > 0
        assert 0 <= res.memory_mb_used <= res.memory_mb
        assert HostResources.from_primitive(res.to_primitive()) == res

    # -- lifecycle -----------------------------------------------------------------------

    def test_spawn_makes_a_running_listed_instance(self, pair: Pair, guest: Instance) -> None:
        src, dst = pair
        assert guest.name in src.list_instances()
        assert src.instance_exists(guest)
        assert src.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in dst.list_instances()

    def test_power_off_then_on(self, pair: Pair, guest: Instance, ctx: RequestContext) -> None:
        src = pair[0]
        src.power_off(guest, timeout=0)
        assert src.get_info(guest).state == PowerState.SHUTDOWN
        src.power_on(ctx, guest, NetworkInfo())
        assert src.get_info(guest).state == PowerState.RUNNING

    def test_destroy_removes_and_is_idempotent(self, pair: Pair, guest: Instance,
                                               ctx: RequestContext) -> None:
        src = pair[0]
        src.destroy(ctx, guest, NetworkInfo())
        assert guest.name not in src.list_instances()
        with pytest.raises(InstanceNotFound):
            src.get_info(guest)
        src.destroy(ctx, guest, NetworkInfo())

    def test_get_info_of_unknown_instance(self, pair: Pair, contract_flavor: Flavor) -> None:
        with pytest.raises(InstanceNotFound):
            pair[0].get_info(Instance(name="contract-missing", flavor=contract_flavor))

    # -- cold migration / resize ---------------------------------------------------------

    def _cold_migrate(self, pair: Pair, guest: Instance, ctx: RequestContext,
                      flavor: Flavor) -> Migration:
        src, dst = pair
        migration = _migration(guest, src, dst, flavor)
        data = dst.prepare_migrate_disk_target(ctx, guest, flavor, migration)
        disks = src.migrate_disk_and_power_off(ctx, guest, dst.host, flavor, NetworkInfo(),
                                               migrate_data=data)
        guest.old_flavor, guest.flavor = guest.flavor, flavor
        dst.finish_migration(ctx, migration, guest, disks, NetworkInfo(),
                             guest.image or ImageMeta(id="none"),
                             resize_instance=flavor != guest.old_flavor)
        return migration

    def test_cold_migration_then_confirm(self, pair: Pair, guest: Instance,
                                         ctx: RequestContext) -> None:
        src, dst = pair
        self._require(src, "supports_cold_migration")
        migration = self._cold_migrate(pair, guest, ctx, guest.flavor)
        assert dst.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in src.list_instances()
        src.confirm_migration(ctx, migration, guest, NetworkInfo())
        assert guest.name not in src.list_instances()
        assert guest.name in dst.list_instances()

    def test_resize_then_revert_restores_the_source(self, pair: Pair, guest: Instance,
                                                     ctx: RequestContext,
                                                     contract_bigger_flavor: Flavor) -> None:
        src, dst = pair
        self._require(src, "supports_resize")
        migration = self._cold_migrate(pair, guest, ctx, contract_bigger_flavor)
        assert dst.get_info(guest).state == PowerState.RUNNING
        dst.destroy(ctx, guest, NetworkInfo())
        guest.flavor = guest.old_flavor or guest.flavor
        src.finish_revert_migration(ctx, guest, NetworkInfo(), migration)
        assert src.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in dst.list_instances()

    def test_resize_refuses_to_shrink_before_touching_anything(
        self, pair: Pair, guest: Instance, ctx: RequestContext, contract_flavor: Flavor
    ) -> None:
        src, dst = pair
        self._require(src, "supports_resize")
        if contract_flavor.root_gb == 0:
            pytest.skip("the contract flavor has no root disk to shrink")
        smaller = Flavor("contract.tiny", memory_mb=contract_flavor.memory_mb,
                         vcpus=contract_flavor.vcpus, root_gb=contract_flavor.root_gb - 1)
        with pytest.raises(ResizeShrinkNotAllowed):
            src.migrate_disk_and_power_off(ctx, guest, dst.host, smaller, NetworkInfo())
        assert src.get_info(guest).state == PowerState.RUNNING

    # -- live migration ------------------------------------------------------------------

    def _prepare_live(self, pair: Pair, guest: Instance, ctx: RequestContext
                      ) -> LiveMigrateData:
        src, dst = pair
        check = dst.check_can_live_migrate_destination(
            ctx, guest, src.get_available_resource(), dst.get_available_resource())
        try:
            data = src.check_can_live_migrate_source(ctx, guest, check)
        finally:
            dst.cleanup_live_migration_destination_check(ctx, check)
        disks = src.get_instance_disk_info(guest) if data.block_migration else None
        return dst.pre_live_migration(ctx, guest, None, NetworkInfo(), disks, data)

    def test_live_migration_ends_in_post_method(self, pair: Pair, guest: Instance,
                                                ctx: RequestContext) -> None:
        src, dst = pair
        self._require(src, "supports_live_migration")
        data = self._prepare_live(pair, guest, ctx)
        rec = MethodRecorder()
        samples: list[JobStats] = []
        src.live_migration(ctx, guest, dst.host, rec.post, rec.recover,
                           bool(data.block_migration), data, progress=samples.append)
        assert rec.calls == ["post"]
        progress = [s.progress for s in samples]
        assert progress == sorted(progress), "reported progress went backwards"
        src.post_live_migration(ctx, guest, None, data)
        dst.post_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                               bool(data.block_migration))
        src.post_live_migration_at_source(ctx, guest, NetworkInfo())
        assert dst.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in src.list_instances()

    def test_live_migration_to_invalid_host_recovers(self, pair: Pair, guest: Instance,
                                                     ctx: RequestContext) -> None:
        src = pair[0]
        self._require(src, "supports_live_migration")
        rec = MethodRecorder()
        with pytest.raises(InvalidHostname):
            src.live_migration(ctx, guest, "bad host/../x", rec.post, rec.recover, False,
                               LiveMigrateData())
        assert rec.calls == ["recover"]
        assert src.get_info(guest).state == PowerState.RUNNING

    def test_pre_live_migration_refuses_existing_instance_dir(
        self, pair: Pair, guest: Instance, ctx: RequestContext
    ) -> None:
        src, dst = pair
        self._require(src, "supports_live_migration")
        data = self._prepare_live(pair, guest, ctx)
        try:
            if not data.is_shared_instance_path:
                with pytest.raises(DestinationDiskExists):
                    dst.pre_live_migration(ctx, guest, None, NetworkInfo(), None, data)
        finally:
            dst.rollback_live_migration_at_destination(ctx, guest, NetworkInfo(), None,
                                                       migrate_data=data)
        assert guest.name not in dst.list_instances()
        assert src.get_info(guest).state == PowerState.RUNNING

    def _start_slow_live(self, pair: Pair, guest: Instance, ctx: RequestContext,
                         slow: Callable[[ComputeDriver, Instance], None] | None
                         ) -> tuple[threading.Thread, MethodRecorder, list[BaseException],
                                    LiveMigrateData]:
        """Start a live migration that cannot converge in a thread; return once it
        reports progress."""
        src, dst = pair
        if slow is None:
            pytest.skip("no slow_live_migration fixture: cannot hold a migration running")
        slow(src, guest)
        data = self._prepare_live(pair, guest, ctx)
        rec = MethodRecorder()
        errors: list[BaseException] = []
        started = threading.Event()

        def run() -> None:
            try:
                src.live_migration(ctx, guest, dst.host, rec.post, rec.recover,
                                   bool(data.block_migration), data,
                                   progress=lambda _s: started.set())
            except BaseException as exc:  # noqa: BLE001 - checked by the caller
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        assert started.wait(60), "the migration never reported progress"
        return worker, rec, errors, data

    def test_live_migration_abort_keeps_guest_on_source(
        self, pair: Pair, guest: Instance, ctx: RequestContext,
        slow_live_migration: Callable[[ComputeDriver, Instance], None] | None,
    ) -> None:
        src, dst = pair
        self._require(src, "supports_live_migration_abort")
        worker, rec, errors, data = self._start_slow_live(pair, guest, ctx,
                                                          slow_live_migration)
        src.live_migration_abort(guest)
        worker.join(60)
        assert not worker.is_alive()
        assert rec.calls == ["recover"]
        assert errors and isinstance(errors[0], LiveMigrationAborted)
        dst.rollback_live_migration_at_destination(ctx, guest, NetworkInfo(), None,
                                                   migrate_data=data)
        assert src.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in dst.list_instances()

    def test_live_migration_force_complete_finishes_on_destination(
        self, pair: Pair, guest: Instance, ctx: RequestContext,
        slow_live_migration: Callable[[ComputeDriver, Instance], None] | None,
    ) -> None:
        src, dst = pair
        self._require(src, "supports_live_migration_force_complete")
        worker, rec, errors, data = self._start_slow_live(pair, guest, ctx,
                                                          slow_live_migration)
        src.live_migration_force_complete(guest)
        worker.join(120)
        assert not worker.is_alive()
        assert errors == [] and rec.calls == ["post"]
        dst.post_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                               bool(data.block_migration))
        src.post_live_migration_at_source(ctx, guest, NetworkInfo())
        assert dst.get_info(guest).state == PowerState.RUNNING
        assert guest.name not in src.list_instances()


def _migration(instance: Instance, src: ComputeDriver, dst: ComputeDriver,
               flavor: Flavor | None = None) -> Migration:
    return Migration(instance_uuid=instance.uuid, source_host=src.host, dest_host=dst.host,
                     migration_type=MigrationType.RESIZE if flavor else MigrationType.MIGRATION,
                     old_flavor=instance.flavor, new_flavor=flavor or instance.flavor)
