"""The compute manager's driver-call sequences, for tests that drive drivers directly.

The conformance kit, a driver's own tests (the libvirt and qemu lab tests, for instance)
and the lab benchmarks call these instead of re-writing the manager's order of calls by
hand: cold migration (:func:`cold_send` = :func:`cold_prepare` + :func:`cold_transfer`,
:func:`cold_finish`, :func:`cold_revert`) and live migration (:func:`prepare_live`,
:func:`live_migrate`, :func:`post_live`, :func:`rollback_live`).  Every object that the
manager would carry over RPC between two steps is passed on only after the serializer's
round trip (:func:`virtsdk.testing.observe.round_trip`), and a claimed capability whose
method raises ``NotImplementedError`` / ``NotSupported`` fails
(:func:`virtsdk.testing.observe.claimed_call`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from virtsdk.context import RequestContext
from virtsdk.driver import ComputeDriver, TransferCallback
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    ImageMeta,
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.states import MigrationType
from virtsdk.testing.observe import claimed_call, round_trip

LIVE = "supports_live_migration"


def migration_record(instance: Instance, src: ComputeDriver, dst: ComputeDriver,
                     flavor: Flavor | None = None) -> Migration:
    """The migration record the conductor would make (a resize when the flavor
    changes)."""
    resize = flavor is not None and flavor != instance.flavor
    return Migration(instance_uuid=instance.uuid, source_host=src.host, dest_host=dst.host,
                     migration_type=MigrationType.RESIZE if resize else MigrationType.MIGRATION,
                     old_flavor=instance.flavor, new_flavor=flavor or instance.flavor)


def cold_prepare(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                 instance: Instance, flavor: Flavor, flag: str = "supports_cold_migration",
                 ) -> tuple[Migration, ColdMigrateData]:
    """``prep_resize`` on the destination: the migration record and the destination's
    ticket (after the RPC round trip)."""
    migration = migration_record(instance, src, dst, flavor)
    data = claimed_call(dst, flag, "prepare_migrate_disk_target", ctx, migration, instance,
                        flavor)
    return migration, round_trip(data, "prepare_migrate_disk_target's ColdMigrateData")


def cold_transfer(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                  instance: Instance, flavor: Flavor, data: ColdMigrateData,
                  flag: str = "supports_cold_migration", dest: str | None = None,
                  network_info: NetworkInfo | None = None, timeout: int = 0,
                  retry_interval: int = 0, progress: TransferCallback | None = None,
                  ) -> list[DiskInfo]:
    """``resize_instance`` on the source: power off and send the disks to the
    destination that issued ``data``; returns the disks sent (after the RPC round
    trip).  On failure it raises; the manager's next steps are the destination's
    ``abort_migrate_disk_target`` and the source's ``finish_revert_migration``."""
    disks = claimed_call(src, flag, "migrate_disk_and_power_off", ctx, instance,
                         dest or dst.host, flavor, network_info or NetworkInfo(),
                         timeout, retry_interval, migrate_data=data, progress=progress)
    return round_trip(disks, "migrate_disk_and_power_off's disk list")


def cold_send(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
              instance: Instance, flavor: Flavor, flag: str = "supports_cold_migration",
              dest: str | None = None, network_info: NetworkInfo | None = None,
              timeout: int = 0, retry_interval: int = 0,
              progress: TransferCallback | None = None,
              ) -> tuple[Migration, list[DiskInfo], ColdMigrateData]:
    """``prep_resize`` + ``resize_instance``: :func:`cold_prepare`, then
    :func:`cold_transfer`.  Returns the migration, the disks sent and the ticket."""
    migration, data = cold_prepare(src, dst, ctx, instance, flavor, flag)
    disks = cold_transfer(src, dst, ctx, instance, flavor, data, flag, dest, network_info,
                          timeout, retry_interval, progress)
    return migration, disks, data


def cold_finish(dst: ComputeDriver, ctx: RequestContext, instance: Instance,
                migration: Migration, disks: list[DiskInfo], flavor: Flavor,
                flag: str = "supports_cold_migration", power_on: bool = True,
                network_info: NetworkInfo | None = None,
                image: ImageMeta | None = None) -> None:
    """``finish_resize``: the instance takes ``flavor`` and is built on ``dst`` (from
    ``image``, by default the instance's own)."""
    instance.old_flavor, instance.flavor = instance.flavor, flavor
    claimed_call(dst, flag, "finish_migration", ctx, migration, instance, disks,
                 network_info or NetworkInfo(),
                 image or instance.image or ImageMeta(id="none"),
                 resize_instance=flavor != instance.old_flavor, power_on=power_on)


def cold_revert(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                instance: Instance, migration: Migration,
                flag: str = "supports_cold_migration", power_on: bool = True,
                network_info: NetworkInfo | None = None) -> None:
    """``revert_resize`` + ``finish_revert_resize``: the destination destroys its copy
    (disks too), the instance takes its old flavor back and the source starts its kept
    copy."""
    net = network_info or NetworkInfo()
    dst.destroy(ctx, instance, net, destroy_disks=True)
    instance.flavor, instance.old_flavor = instance.old_flavor or instance.flavor, None
    claimed_call(src, flag, "finish_revert_migration", ctx, migration, instance, net,
                 power_on=power_on)


def prepare_live(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                 instance: Instance, block_migration: bool | None = None,
                 network_info: NetworkInfo | None = None) -> LiveMigrateData:
    """The conductor's checks and the source manager's ``pre_live_migration`` call;
    on a failing ``pre_live_migration`` both rollbacks run, as the manager does."""
    net = network_info or NetworkInfo()
    check = claimed_call(dst, LIVE, "check_can_live_migrate_destination", ctx, instance,
                         src.get_available_resource(), dst.get_available_resource(),
                         block_migration=block_migration)
    check = round_trip(check, "check_can_live_migrate_destination's LiveMigrateData")
    try:
        data: LiveMigrateData = claimed_call(src, LIVE, "check_can_live_migrate_source", ctx,
                                             instance, check)
    finally:
        dst.cleanup_live_migration_destination_check(ctx, check)
    data = round_trip(data, "check_can_live_migrate_source's LiveMigrateData")
    disks = src.get_instance_disk_info(instance) if data.block_migration else None
    if disks is not None:
        disks = round_trip(disks, "get_instance_disk_info's disk list")
    try:
        data = claimed_call(dst, LIVE, "pre_live_migration", ctx, instance, net,
                            disks, data)
    except Exception:
        dst.rollback_live_migration_at_destination(ctx, instance, net,
                                                   migrate_data=data)
        src.rollback_live_migration_at_source(ctx, instance, data)
        raise
    return round_trip(data, "pre_live_migration's LiveMigrateData")


def post_live(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
              instance: Instance, data: LiveMigrateData,
              network_info: NetworkInfo | None = None,
              block_migration: bool | None = None) -> None:
    """The manager's steps after a completed live migration (``post_live_migration``
    on the source, ``post_live_migration_at_destination``, then
    ``post_live_migration_at_source``); ``block_migration`` as ``post_method`` was
    told (default: the migrate data's)."""
    net = network_info or NetworkInfo()
    if block_migration is None:
        block_migration = bool(data.block_migration)
    src.post_live_migration(ctx, instance, data)
    dst.post_live_migration_at_destination(ctx, instance, net, block_migration)
    src.post_live_migration_at_source(ctx, instance, net)


def rollback_live(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                  instance: Instance, data: LiveMigrateData,
                  network_info: NetworkInfo | None = None) -> None:
    """The manager's rollback of a live migration that did not complete (source
    first, then destination)."""
    src.rollback_live_migration_at_source(ctx, instance, data)
    dst.rollback_live_migration_at_destination(ctx, instance, network_info or NetworkInfo(),
                                               migrate_data=data)


@dataclass
class LiveOutcome:
    """What one live migration did: the callbacks called, the samples, the error."""

    calls: list[str] = field(default_factory=list)
    samples: list[JobStats] = field(default_factory=list)
    data: LiveMigrateData | None = None
    error: BaseException | None = None

    @property
    def final(self) -> JobStats:
        return self.samples[-1]


def live_migrate(src: ComputeDriver, dst: ComputeDriver, ctx: RequestContext,
                 instance: Instance, data: LiveMigrateData | None = None,
                 network_info: NetworkInfo | None = None,
                 on_sample: Callable[[JobStats], None] | None = None,
                 on_callback: Callable[[str], None] | None = None,
                 dest: str | None = None, block_migration: bool | None = None,
                 ) -> LiveOutcome:
    """The whole live migration as the manager runs it: :func:`prepare_live` (unless
    ``data`` is given), ``live_migration`` whose ``post_method`` runs the three post
    steps and whose ``recover_method`` runs both rollbacks.  ``on_callback("post" |
    "recover")`` is called as each callback starts, ``on_sample`` with every sample.
    The error ``live_migration`` raised is returned in the outcome, not raised."""
    net = network_info or NetworkInfo()
    if data is None:
        data = prepare_live(src, dst, ctx, instance, block_migration, net)
    out = LiveOutcome()

    def post(_c: RequestContext, inst: Instance, _d: str, block: bool,
             migrate_data: LiveMigrateData) -> None:
        out.calls.append("post")
        out.data = migrate_data
        if on_callback is not None:
            on_callback("post")
        post_live(src, dst, ctx, inst, migrate_data, net, block)

    def recover(_c: RequestContext, inst: Instance, _d: str,
                migrate_data: LiveMigrateData) -> None:
        out.calls.append("recover")
        out.data = migrate_data
        if on_callback is not None:
            on_callback("recover")
        rollback_live(src, dst, ctx, inst, migrate_data, net)

    def progress(stats: JobStats) -> None:
        out.samples.append(stats)
        if on_sample is not None:
            on_sample(stats)

    try:
        claimed_call(src, LIVE, "live_migration", ctx, instance, dest or dst.host, post,
                     recover, bool(data.block_migration), data, progress=progress)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the caller looks at it
        out.error = exc
    return out
