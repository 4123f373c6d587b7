"""The compute manager's live-migration sequence between two drivers, for tests and
benchmarks of any driver (no manager, bus or database involved).

:func:`run_live_migration` runs the checks, ``pre_live_migration``, ``live_migration``
with ``post_method`` / ``recover_method`` doing what the manager does in each case
(post steps on both hosts, or rollback on both), and reports what happened as a
:class:`LiveOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from virtsdk.context import RequestContext, get_admin_context
from virtsdk.driver import ComputeDriver
from virtsdk.objects import Instance, JobStats, LiveMigrateData, NetworkInfo


@dataclass
class LiveOutcome:
    """What one live migration did: the callbacks that ran (``post`` / ``recover``),
    every progress sample, the migrate data and the error ``live_migration`` raised."""

    calls: list[str] = field(default_factory=list)
    samples: list[JobStats] = field(default_factory=list)
    data: LiveMigrateData | None = None
    error: BaseException | None = None

    @property
    def final(self) -> JobStats:
        return self.samples[-1]


def prepare_live_migration(src: ComputeDriver, dst: ComputeDriver, instance: Instance,
                           ctx: RequestContext | None = None,
                           network_info: NetworkInfo | None = None) -> LiveMigrateData:
    """Destination check, source check, check clean-up, ``pre_live_migration``."""
    ctx = ctx or get_admin_context()
    check = dst.check_can_live_migrate_destination(
        ctx, instance, src.get_available_resource(), dst.get_available_resource())
    try:
        data = src.check_can_live_migrate_source(ctx, instance, check)
    finally:
        dst.cleanup_live_migration_destination_check(ctx, check)
    disks = src.get_instance_disk_info(instance) if data.block_migration else None
    return dst.pre_live_migration(ctx, instance, network_info or NetworkInfo(),
                                  disks, data)


def run_live_migration(src: ComputeDriver, dst: ComputeDriver, instance: Instance,
                       ctx: RequestContext | None = None,
                       network_info: NetworkInfo | None = None,
                       on_sample: Callable[[JobStats], None] | None = None,
                       dest_name: str | None = None) -> LiveOutcome:
    """Prepare and run one live migration; never raises for a failed migration (the
    error is in the outcome), only when the preparation fails."""
    ctx = ctx or get_admin_context()
    net = network_info or NetworkInfo()
    data = prepare_live_migration(src, dst, instance, ctx, net)
    out = LiveOutcome(data=data)

    def post(context: RequestContext, instance: Instance, dest: str,
             block_migration: bool, migrate_data: LiveMigrateData) -> None:
        out.calls.append("post")
        out.data = migrate_data
        src.post_live_migration(ctx, instance, migrate_data)
        dst.post_live_migration_at_destination(ctx, instance, net, block_migration)
        src.post_live_migration_at_source(ctx, instance, net)

    def recover(context: RequestContext, instance: Instance, dest: str,
                migrate_data: LiveMigrateData) -> None:
        out.calls.append("recover")
        out.data = migrate_data
        src.rollback_live_migration_at_source(ctx, instance, migrate_data)
        dst.rollback_live_migration_at_destination(ctx, instance, net,
                                                   migrate_data=migrate_data)

    def progress(stats: JobStats) -> None:
        out.samples.append(stats)
        if on_sample is not None:
            on_sample(stats)

    try:
        src.live_migration(ctx, instance, dest_name or dst.host, post, recover,
                           block_migration=bool(data.block_migration), migrate_data=data,
                           progress=progress)
    except Exception as exc:  # noqa: BLE001 - the outcome carries it
        out.error = exc
    return out
