"""The driver conformance kit: checks what a driver *does*, not only what it is called.

A driver's own repository runs it with one fixture, ``driver_factory``: a callable that
returns the driver serving a given host name, where all the hosts it serves can reach
each other (the kit asks for two)::

    import pytest
    from virtsdk.testing import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_factory(self, tmp_path):
            conf = make_conf(tmp_path)
            return lambda host: MyDriver(conf, host)

The ``pytest11`` plugin :mod:`virtsdk.testing.plugin` (installed with virtsdk) turns
on pytest's assertion rewriting for the kit, so every failure shows the values seen.

After every step the kit asks the hypervisor what really happened through the four
observation hooks of :class:`~virtsdk.driver.ComputeDriver` (``observe_guests``,
``observe_footprint``, ``write_disk_marker``, ``observe_disk``) and checks:

* data: a marker written on the root disk survives cold migration, resize (the disk
  grows), revert, live and block migration;
* exactly one running copy of the guest at every moment the manager can observe, and
  nothing left after confirm, revert, destroy and rollback;
* arguments honoured: ``power_on`` (spawn, finish_migration, finish_revert_migration),
  ``destroy_disks``, ``block_migration``, ``migrate_data`` (passed on only after the RPC
  round trip the manager would give it);
* failure paths: a transfer failing mid-way, ``abort_migrate_disk_target``, both
  live-migration rollbacks, abort and force-complete;
* stopped and defined-but-off instances are listed; ``get_info`` tells the truth; every
  returned object survives the RPC serializer;
* a claimed capability whose methods are missing or raise ``NotImplementedError`` /
  ``NotSupported`` is a failure.

Lifecycle checks run unless the driver's ``spawn`` raises ``NotSupported`` (a freshly
scaffolded driver); feature checks run when :class:`~virtsdk.driver.Capabilities`
claim the feature and are skipped, saying why, otherwise.  Optional fixtures:
``contract_hosts``, ``contract_flavor``, ``contract_bigger_flavor``,
``contract_image``, ``slow_live_migration`` (make the next live migration of the given
instance run until aborted: enables the abort and force-complete checks) and
``fail_disk_transfer`` (make the next cold-migration transfer from the given driver
fail half way: enables the mid-transfer failure check).  Every check spawns one guest
and removes it from every host at the end.

Each check names the feature it exercises (the ``virtsdk_feature`` mark); run pytest with
``--conformance-report DIR`` and the outcomes are written per driver and feature to
``DIR/<driver>.json`` (:mod:`virtsdk.testing.report`), which ``virtsdk drivers matrix
--results DIR`` shows as ``passes`` / ``fails``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from virtsdk.context import RequestContext, get_admin_context
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    DestinationDiskExists,
    InstanceNotFound,
    InvalidHostname,
    LiveMigrationAborted,
    NotSupported,
    ResizeShrinkNotAllowed,
)
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.states import PowerState
from virtsdk.testing import observe, sequences
from virtsdk.testing.observe import (
    at_most_one_running,
    claimed_call,
    clean_problems,
    copies_problems,
    info_problems,
    marker_problems,
    round_trip,
)
from virtsdk.testing.plugin import CLASS_PROPERTY, DRIVER_PROPERTY, FEATURE_PROPERTY
from virtsdk.testing.report import LIFECYCLE

DriverFactory = Callable[[str], ComputeDriver]
#: the feature a check exercises (a Capabilities flag without ``supports_``, or
#: ``lifecycle``): what ``--conformance-report`` files its outcome under
feature = pytest.mark.virtsdk_feature
Pair = tuple[ComputeDriver, ComputeDriver]
Hook = Callable[[ComputeDriver, Instance], None]

COLD = "supports_cold_migration"
RESIZE = "supports_resize"
LIVE = "supports_live_migration"
BLOCK = "supports_block_migration"
ABORT = "supports_live_migration_abort"
FORCE = "supports_live_migration_force_complete"


class CallbackRecorder:
    """Records calls of the ``post_method`` / ``recover_method`` given to live_migration,
    and checks, at the moment each is called, where the guest runs."""

    def __init__(self, pair: Pair, instance: Instance) -> None:
        self.calls: list[str] = []
        self.problems: list[str] = []
        self.pair = pair
        self.instance = instance

    def post(self, context: RequestContext, instance: Instance, dest: str,
             block_migration: bool, migrate_data: LiveMigrateData) -> None:
        self.calls.append("post")
        self.problems += at_most_one_running(self.pair, self.instance, "when post_method ran")

    def recover(self, context: RequestContext, instance: Instance, dest: str,
                migrate_data: LiveMigrateData) -> None:
        self.calls.append("recover")


class DriverConformance:
    """Outcome checks of the ComputeDriver contract; see the module docstring."""

    # -- fixtures a driver provides or may override ----------------------------------------

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        raise NotImplementedError("the driver's test class provides a driver_factory "
                                  "fixture: host name -> driver serving that host")

    @pytest.fixture
    def contract_hosts(self) -> tuple[str, str]:
        return ("contract-src", "contract-dst")

    @pytest.fixture
    def contract_flavor(self) -> Flavor:
        return Flavor("contract.small", memory_mb=256, vcpus=1, root_gb=2)

    @pytest.fixture
    def contract_bigger_flavor(self) -> Flavor:
        return Flavor("contract.big", memory_mb=512, vcpus=2, root_gb=3)

    @pytest.fixture
    def contract_image(self) -> ImageMeta:
        return ImageMeta(id="contract-image", name="contract-image")

    @pytest.fixture
    def slow_live_migration(self) -> Hook | None:
        return None

    @pytest.fixture
    def fail_disk_transfer(self) -> Hook | None:
        return None

    # -- plumbing --------------------------------------------------------------------------

    @pytest.fixture
    def ctx(self) -> RequestContext:
        return get_admin_context()

    @pytest.fixture
    def pair(self, driver_factory: DriverFactory, contract_hosts: tuple[str, str]) -> Pair:
        src, dst = (driver_factory(h) for h in contract_hosts)
        return src, dst

    @pytest.fixture(autouse=True)
    def _conformance_identity(self, request: pytest.FixtureRequest, pair: Pair) -> None:
        """Tags the check's report with the driver and feature it is about (read by
        ``--conformance-report``)."""
        mark = request.node.get_closest_marker("virtsdk_feature")
        cls = type(pair[0])
        request.node.user_properties += [
            (DRIVER_PROPERTY, pair[0].name),
            (CLASS_PROPERTY, f"{cls.__module__}:{cls.__qualname__}"),
            (FEATURE_PROPERTY, mark.args[0] if mark is not None else LIFECYCLE)]

    @pytest.fixture
    def marker(self) -> bytes:
        return f"virtsdk-conformance:{uuid.uuid4().hex}".encode()

    def _new_instance(self, pair: Pair, flavor: Flavor, image: ImageMeta) -> Instance:
        return Instance(name=f"contract-{uuid.uuid4().hex[:8]}", flavor=flavor,
                        image=image, host=pair[0].host)

    @pytest.fixture
    def instance(self, pair: Pair, ctx: RequestContext, contract_flavor: Flavor,
                 contract_image: ImageMeta) -> Iterator[Instance]:
        """An instance not yet spawned; removed from both hosts afterwards."""
        inst = self._new_instance(pair, contract_flavor, contract_image)
        yield inst
        _remove_everywhere(pair, inst, ctx)

    @pytest.fixture
    def guest(self, pair: Pair, ctx: RequestContext, instance: Instance,
              marker: bytes) -> Instance:
        """A running instance on the source host whose root disk holds ``marker``."""
        src = pair[0]
        _spawn(src, ctx, instance, power_on=True)
        src.write_disk_marker(instance, marker)
        return instance

    @staticmethod
    def _require(driver: ComputeDriver, flag: str) -> None:
        if not getattr(driver.capabilities, flag):
            pytest.skip(f"driver {driver.name!r} does not claim {flag}")

    # -- declarations ----------------------------------------------------------------------

    @feature("declarations")
    def test_claimed_features_are_implemented(self, pair: Pair) -> None:
        problems = observe.missing_methods(type(pair[0]))
        assert not problems, f"driver {pair[0].name!r}: " + "; ".join(problems)

    @feature("lifecycle")
    def test_host_resources_are_sane_and_cross_rpc(self, pair: Pair) -> None:
        try:
            res = pair[0].get_available_resource()
        except NotSupported:
            pytest.skip("get_available_resource raises NotSupported: no lifecycle yet")
        assert isinstance(res, HostResources), f"get_available_resource returned {res!r}"
        assert res.vcpus > 0 and res.memory_mb > 0 and res.local_gb > 0, (
            f"host resources without capacity: {res!r}")
        assert 0 <= res.memory_mb_used <= res.memory_mb, f"memory used out of range: {res!r}"
        round_trip(res, "get_available_resource's HostResources")

    # -- lifecycle -------------------------------------------------------------------------

    @feature("lifecycle")
    def test_spawn_runs_exactly_one_listed_copy(self, pair: Pair, guest: Instance,
                                                marker: bytes) -> None:
        src, dst = pair
        listed = src.list_instances()
        assert guest.name in listed, f"{guest.name!r} missing from list_instances(): {listed}"
        assert src.instance_exists(guest), "instance_exists() is False after spawn"
        assert guest.name not in dst.list_instances(), "the other host lists the guest"
        problems = copies_problems(pair, guest, "after spawn", src.host)
        problems += info_problems(src, guest, "after spawn")
        problems += marker_problems(src, guest, marker, "after spawn")
        problems += clean_problems(dst, guest, "after spawn on the other host")
        observe.check(problems)

    @feature("lifecycle")
    def test_spawn_power_on_false_defines_a_stopped_listed_guest(
            self, pair: Pair, instance: Instance, ctx: RequestContext) -> None:
        src = pair[0]
        _spawn(src, ctx, instance, power_on=False)
        state = src.get_info(instance).state
        assert state == PowerState.SHUTDOWN, (
            f"spawn(power_on=False) left the guest {state.name}, not SHUTDOWN")
        observe.check(copies_problems(pair, instance, "after spawn(power_on=False)", None))
        listed = src.list_instances()
        assert instance.name in listed, (
            f"a defined-but-off instance is missing from list_instances(): {listed}")

    @feature("lifecycle")
    def test_stopped_guest_is_listed_and_starts_again(self, pair: Pair, guest: Instance,
                                                      ctx: RequestContext,
                                                      marker: bytes) -> None:
        src = pair[0]
        src.power_off(guest, timeout=0)
        observe.check(copies_problems(pair, guest, "after power_off", None)
                      + info_problems(src, guest, "after power_off"))
        listed = src.list_instances()
        assert guest.name in listed, (
            f"a stopped instance is missing from list_instances(): {listed}")
        src.power_on(ctx, guest, NetworkInfo())
        observe.check(copies_problems(pair, guest, "after power_on", src.host)
                      + info_problems(src, guest, "after power_on")
                      + marker_problems(src, guest, marker, "after power_off/power_on"))

    @feature("lifecycle")
    def test_destroy_leaves_nothing_and_is_idempotent(self, pair: Pair, guest: Instance,
                                                      ctx: RequestContext) -> None:
        src = pair[0]
        src.destroy(ctx, guest, NetworkInfo())
        observe.check(copies_problems(pair, guest, "after destroy", None)
                      + clean_problems(src, guest, "after destroy"))
        assert guest.name not in src.list_instances(), "destroyed instance still listed"
        with pytest.raises(InstanceNotFound):
            src.get_info(guest)
        src.destroy(ctx, guest, NetworkInfo())

    @feature("lifecycle")
    def test_destroy_keeps_disks_when_asked(self, pair: Pair, guest: Instance,
                                            ctx: RequestContext) -> None:
        src = pair[0]
        src.destroy(ctx, guest, NetworkInfo(), destroy_disks=False)
        observe.check(copies_problems(pair, guest, "after destroy(destroy_disks=False)", None))
        left = src.observe_footprint(guest)
        assert left, "destroy(destroy_disks=False) removed the disks too: nothing is left"
        src.destroy(ctx, guest, NetworkInfo(), destroy_disks=True)
        observe.check(clean_problems(src, guest, "after destroy(destroy_disks=True)"))

    @feature("lifecycle")
    def test_get_info_of_unknown_instance(self, pair: Pair, contract_flavor: Flavor) -> None:
        with pytest.raises((InstanceNotFound, NotSupported)) as err:
            pair[0].get_info(Instance(name="contract-missing", flavor=contract_flavor))
        if isinstance(err.value, NotSupported):
            pytest.skip("get_info raises NotSupported: no lifecycle yet")

    # -- cold migration / resize -----------------------------------------------------------

    def _send(self, pair: Pair, guest: Instance, ctx: RequestContext, flavor: Flavor,
              flag: str) -> tuple[Migration, list[DiskInfo], ColdMigrateData]:
        """prepare_migrate_disk_target + migrate_disk_and_power_off, checked."""
        out = sequences.cold_send(pair[0], pair[1], ctx, guest, flavor, flag)
        observe.check(copies_problems(pair, guest, "after migrate_disk_and_power_off", None))
        return out

    def _cold_migrate(self, pair: Pair, guest: Instance, ctx: RequestContext,
                      flavor: Flavor, flag: str, power_on: bool = True) -> Migration:
        migration, disks, _data = self._send(pair, guest, ctx, flavor, flag)
        sequences.cold_finish(pair[1], ctx, guest, migration, disks, flavor, flag, power_on)
        return migration

    @feature("cold_migration")
    def test_cold_migration_moves_the_data_then_confirm_cleans_the_source(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes) -> None:
        src, dst = pair
        self._require(src, COLD)
        migration = self._cold_migrate(pair, guest, ctx, guest.flavor, COLD)
        observe.check(copies_problems(pair, guest, "after finish_migration", dst.host)
                      + info_problems(dst, guest, "after finish_migration")
                      + marker_problems(dst, guest, marker, "after cold migration"))
        assert guest.name in dst.list_instances(), "destination does not list the guest"
        # (the source may still list its stopped copy until confirm: Nova's libvirt does)
        claimed_call(src, COLD, "confirm_migration", ctx, migration, guest, NetworkInfo())
        observe.check(copies_problems(pair, guest, "after confirm_migration", dst.host)
                      + clean_problems(src, guest, "after confirm_migration")
                      + marker_problems(dst, guest, marker, "after confirm_migration"))

    @feature("cold_migration")
    def test_finish_migration_honours_power_on_false(self, pair: Pair, guest: Instance,
                                                      ctx: RequestContext,
                                                      marker: bytes) -> None:
        src, dst = pair
        self._require(src, COLD)
        migration = self._cold_migrate(pair, guest, ctx, guest.flavor, COLD, power_on=False)
        state = dst.get_info(guest).state
        assert state == PowerState.SHUTDOWN, (
            f"finish_migration(power_on=False) left the guest {state.name}")
        observe.check(copies_problems(pair, guest, "after finish_migration(power_on=False)",
                                      None)
                      + marker_problems(dst, guest, marker, "after cold migration"))
        assert guest.name in dst.list_instances(), "stopped migrated guest is not listed"
        claimed_call(src, COLD, "confirm_migration", ctx, migration, guest, NetworkInfo())
        observe.check(clean_problems(src, guest, "after confirm_migration"))

    @feature("resize")
    def test_resize_grows_the_disk_and_revert_restores_the_source(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes,
            contract_bigger_flavor: Flavor) -> None:
        src, dst = pair
        self._require(src, RESIZE)
        before = src.observe_disk(guest).size
        migration = self._cold_migrate(pair, guest, ctx, contract_bigger_flavor, RESIZE)
        after = dst.observe_disk(guest).size
        assert after > before, (
            f"resize to {contract_bigger_flavor.name} did not grow the root disk: "
            f"{before} bytes before, {after} after")
        observe.check(copies_problems(pair, guest, "after resize", dst.host)
                      + marker_problems(dst, guest, marker, "after resize"))
        sequences.cold_revert(src, dst, ctx, guest, migration, RESIZE)
        observe.check(copies_problems(pair, guest, "after finish_revert_migration", src.host)
                      + clean_problems(dst, guest, "after revert")
                      + marker_problems(src, guest, marker, "after revert"))
        assert src.observe_disk(guest).size == before, "revert did not restore the disk"

    @feature("cold_migration")
    def test_finish_revert_migration_honours_power_on_false(
            self, pair: Pair, guest: Instance, ctx: RequestContext) -> None:
        src, dst = pair
        self._require(src, COLD)
        migration = self._cold_migrate(pair, guest, ctx, guest.flavor, COLD)
        sequences.cold_revert(src, dst, ctx, guest, migration, COLD, power_on=False)
        observe.check(copies_problems(pair, guest, "after finish_revert_migration"
                                      "(power_on=False)", None))
        assert guest.name in src.list_instances(), "reverted stopped guest is not listed"

    @feature("cold_migration")
    def test_transfer_failing_midway_keeps_the_source(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes,
            fail_disk_transfer: Hook | None) -> None:
        src, dst = pair
        self._require(src, COLD)
        if fail_disk_transfer is None:
            pytest.skip("no fail_disk_transfer fixture: cannot cut a transfer half way")
        migration, data = sequences.cold_prepare(src, dst, ctx, guest, guest.flavor, COLD)
        fail_disk_transfer(src, guest)
        with pytest.raises(Exception) as err:  # noqa: PT011 - any failure will do
            sequences.cold_transfer(src, dst, ctx, guest, guest.flavor, data, COLD)
        assert not isinstance(err.value, (NotImplementedError, NotSupported)), err.value
        observe.check(at_most_one_running(pair, guest, "after the failed transfer"))
        # what the manager does next: clean the destination, restore the source
        dst.abort_migrate_disk_target(ctx, guest, data)
        src.finish_revert_migration(ctx, migration, guest, NetworkInfo(), power_on=True)
        observe.check(copies_problems(pair, guest, "after the failed transfer", src.host)
                      + clean_problems(dst, guest, "after the failed transfer")
                      + marker_problems(src, guest, marker, "after the failed transfer"))

    @feature("cold_migration")
    def test_abort_migrate_disk_target_leaves_the_destination_clean(
            self, pair: Pair, guest: Instance, ctx: RequestContext) -> None:
        src, dst = pair
        self._require(src, COLD)
        _migration, data = sequences.cold_prepare(src, dst, ctx, guest, guest.flavor, COLD)
        dst.abort_migrate_disk_target(ctx, guest, data)
        observe.check(clean_problems(dst, guest, "after abort_migrate_disk_target")
                      + copies_problems(pair, guest, "after abort_migrate_disk_target",
                                        src.host))

    @feature("resize")
    def test_resize_refuses_to_shrink_before_touching_anything(
            self, pair: Pair, guest: Instance, ctx: RequestContext,
            contract_flavor: Flavor) -> None:
        src, dst = pair
        self._require(src, RESIZE)
        if contract_flavor.root_gb < 2:
            pytest.skip("the contract flavor's root disk cannot shrink (root_gb 0 means "
                        "'as big as the image', not a smaller disk)")
        smaller = Flavor("contract.tiny", memory_mb=contract_flavor.memory_mb,
                         vcpus=contract_flavor.vcpus, root_gb=contract_flavor.root_gb - 1)
        migration = sequences.migration_record(guest, src, dst, smaller)
        data = dst.prepare_migrate_disk_target(ctx, migration, guest, smaller)
        try:
            with pytest.raises(ResizeShrinkNotAllowed):
                src.migrate_disk_and_power_off(ctx, guest, dst.host, smaller, NetworkInfo(),
                                               migrate_data=data)
        finally:
            dst.abort_migrate_disk_target(ctx, guest, data)
        observe.check(copies_problems(pair, guest, "after a refused shrink", src.host)
                      + clean_problems(dst, guest, "after a refused shrink"))

    # -- live migration --------------------------------------------------------------------

    def _prepare_live(self, pair: Pair, guest: Instance, ctx: RequestContext,
                      block_migration: bool | None = None) -> LiveMigrateData:
        return sequences.prepare_live(pair[0], pair[1], ctx, guest, block_migration)

    def _live_migrate(self, pair: Pair, guest: Instance, ctx: RequestContext,
                      block_migration: bool | None = None) -> LiveMigrateData:
        during: list[str] = []

        def at_callback(which: str) -> None:
            if which == "post":
                during.extend(at_most_one_running(pair, guest, "when post_method ran"))

        out = sequences.live_migrate(
            pair[0], pair[1], ctx, guest, block_migration=block_migration,
            on_sample=lambda _s: during.extend(_while_running(pair, guest)),
            on_callback=at_callback)
        assert out.calls == ["post"], (
            f"live_migration must call post_method exactly once and recover_method never; "
            f"it called {out.calls or 'neither'} (error: {out.error!r})")
        assert out.error is None, f"live_migration raised after post_method: {out.error!r}"
        observe.check(during[:1])
        progress_seen = [s.progress for s in out.samples]
        assert progress_seen == sorted(progress_seen), (
            f"reported progress went backwards: {progress_seen}")
        assert out.data is not None
        return out.data

    @feature("live_migration")
    def test_live_migration_moves_the_guest_and_its_data(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes) -> None:
        src, dst = pair
        self._require(src, LIVE)
        self._live_migrate(pair, guest, ctx)
        observe.check(copies_problems(pair, guest, "after live migration", dst.host)
                      + info_problems(dst, guest, "after live migration")
                      + clean_problems(src, guest, "after live migration")
                      + marker_problems(dst, guest, marker, "after live migration"))
        assert guest.name not in src.list_instances(), "the source still lists the guest"

    @feature("block_migration")
    def test_block_migration_is_honoured_and_moves_the_disks(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes) -> None:
        src, dst = pair
        self._require(src, BLOCK)
        data = self._live_migrate(pair, guest, ctx, block_migration=True)
        assert data.block_migration is True, (
            f"block_migration=True was asked for but the migrate data says "
            f"{data.block_migration!r}")
        observe.check(copies_problems(pair, guest, "after block migration", dst.host)
                      + clean_problems(src, guest, "after block migration")
                      + marker_problems(dst, guest, marker, "after block migration"))

    @feature("live_migration")
    def test_live_migration_to_invalid_host_recovers(self, pair: Pair, guest: Instance,
                                                     ctx: RequestContext) -> None:
        src = pair[0]
        self._require(src, LIVE)
        rec = CallbackRecorder(pair, guest)
        with pytest.raises(InvalidHostname):
            claimed_call(src, LIVE, "live_migration", ctx, guest, "bad host/../x", rec.post,
                         rec.recover, False, LiveMigrateData())
        # refused input may raise before anything started (no callback); anything else
        # must end in recover_method, once
        assert rec.calls in ([], ["recover"]), (
            f"a refused live_migration must call recover_method at most once and "
            f"post_method never; it called {rec.calls}")
        observe.check(copies_problems(pair, guest, "after a refused live migration",
                                      src.host))

    @feature("live_migration")
    def test_live_rollbacks_leave_the_destination_clean(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes) -> None:
        src, dst = pair
        self._require(src, LIVE)
        data = self._prepare_live(pair, guest, ctx)
        src.rollback_live_migration_at_source(ctx, guest, data)
        dst.rollback_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                                   migrate_data=data)
        observe.check(copies_problems(pair, guest, "after both live rollbacks", src.host)
                      + clean_problems(dst, guest, "after rollback_at_destination")
                      + marker_problems(src, guest, marker, "after the rollbacks"))

    @feature("live_migration")
    def test_pre_live_migration_refuses_existing_instance_dir(
            self, pair: Pair, guest: Instance, ctx: RequestContext) -> None:
        src, dst = pair
        self._require(src, LIVE)
        data = self._prepare_live(pair, guest, ctx)
        try:
            if not data.is_shared_instance_path:
                with pytest.raises(DestinationDiskExists):
                    dst.pre_live_migration(ctx, guest, NetworkInfo(), None, data)
        finally:
            dst.rollback_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                                       migrate_data=data)
        observe.check(clean_problems(dst, guest, "after rollback_at_destination")
                      + copies_problems(pair, guest, "after the refused prepare", src.host))

    def _start_slow_live(self, pair: Pair, guest: Instance, ctx: RequestContext,
                         slow: Hook | None
                         ) -> tuple[threading.Thread, CallbackRecorder, list[BaseException],
                                    LiveMigrateData, list[str]]:
        """A live migration that cannot converge, in a thread; returns once it reports
        memory moved (the job is in flight)."""
        src, dst = pair
        if slow is None:
            pytest.skip("no slow_live_migration fixture: cannot hold a migration running")
        slow(src, guest)
        data = self._prepare_live(pair, guest, ctx)
        rec = CallbackRecorder(pair, guest)
        errors: list[BaseException] = []
        during: list[str] = []
        started = threading.Event()

        def progress(stats: JobStats) -> None:
            during.extend(_while_running(pair, guest))
            if stats.memory_processed > 0:  # the job really moves memory: in flight
                started.set()

        def run() -> None:
            try:
                src.live_migration(ctx, guest, dst.host, rec.post, rec.recover,
                                   bool(data.block_migration), data, progress=progress)
            except BaseException as exc:  # noqa: BLE001 - checked by the caller
                errors.append(exc)
                started.set()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        assert started.wait(120), "the migration never reported progress"
        return worker, rec, errors, data, during

    def _interrupt(self, pair: Pair, guest: Instance, ctx: RequestContext, slow: Hook | None,
                   flag: str, method: str, wait: float
                   ) -> tuple[CallbackRecorder, list[BaseException], LiveMigrateData, list[str]]:
        """Start a migration that cannot converge, call ``method`` on it, wait for
        ``live_migration`` to return."""
        self._require(pair[0], flag)
        worker, rec, errors, data, during = self._start_slow_live(pair, guest, ctx, slow)
        claimed_call(pair[0], flag, method, guest)
        worker.join(wait)
        assert not worker.is_alive(), f"live_migration did not return after {method}"
        return rec, errors, data, during

    @feature("live_migration_abort")
    def test_live_migration_abort_keeps_the_guest_on_the_source(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes,
            slow_live_migration: Hook | None) -> None:
        src, dst = pair
        rec, errors, data, during = self._interrupt(pair, guest, ctx, slow_live_migration,
                                                    ABORT, "live_migration_abort", 120)
        assert rec.calls == ["recover"], f"after abort the callbacks were {rec.calls}"
        assert errors and isinstance(errors[0], LiveMigrationAborted), (
            f"an aborted live_migration must raise LiveMigrationAborted, raised {errors}")
        src.rollback_live_migration_at_source(ctx, guest, data)
        dst.rollback_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                                   migrate_data=data)
        observe.check(during[:1]
                      + copies_problems(pair, guest, "after abort", src.host)
                      + clean_problems(dst, guest, "after abort and rollback")
                      + marker_problems(src, guest, marker, "after abort"))

    @feature("live_migration_force_complete")
    def test_live_migration_force_complete_finishes_on_the_destination(
            self, pair: Pair, guest: Instance, ctx: RequestContext, marker: bytes,
            slow_live_migration: Hook | None) -> None:
        src, dst = pair
        rec, errors, data, during = self._interrupt(pair, guest, ctx, slow_live_migration,
                                                    FORCE, "live_migration_force_complete", 300)
        assert errors == [] and rec.calls == ["post"], (
            f"force-complete must end in post_method: callbacks {rec.calls}, errors {errors}")
        src.post_live_migration(ctx, guest, data)
        dst.post_live_migration_at_destination(ctx, guest, NetworkInfo(),
                                               bool(data.block_migration))
        src.post_live_migration_at_source(ctx, guest, NetworkInfo())
        observe.check(during[:1] + rec.problems
                      + copies_problems(pair, guest, "after force-complete", dst.host)
                      + clean_problems(src, guest, "after force-complete")
                      + marker_problems(dst, guest, marker, "after force-complete"))


def _while_running(pair: Pair, guest: Instance) -> list[str]:
    """The copies check for a progress callback: it must never break the migration."""
    try:
        return at_most_one_running(pair, guest, "during live migration")
    except Exception as exc:  # noqa: BLE001 - reported as a conformance problem
        return [f"observe_guests raised during live migration: {exc!r}"]


def _spawn(driver: ComputeDriver, ctx: RequestContext, inst: Instance, power_on: bool) -> None:
    try:
        driver.spawn(ctx, inst, inst.image or ImageMeta(id="none"), NetworkInfo(),
                     power_on=power_on)
    except NotSupported as exc:
        pytest.skip(f"spawn raises NotSupported ({exc}): no lifecycle to check yet")


def _remove_everywhere(pair: Pair, inst: Instance, ctx: RequestContext) -> None:
    """Best-effort removal of every trace of ``inst`` from both hosts."""
    src, dst = pair
    migration = sequences.migration_record(inst, src, dst)
    for drv in (dst, src):
        steps: list[tuple[Callable[..., object], tuple[object, ...]]] = [
            (drv.confirm_migration, (ctx, migration, inst, NetworkInfo())),
            (drv.rollback_live_migration_at_destination, (ctx, inst, NetworkInfo())),
            (drv.destroy, (ctx, inst, NetworkInfo())),
        ]
        for fn, args in steps:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001, S110 - best-effort cleanup
                pass
