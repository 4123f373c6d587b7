"""``live_migration`` and the calls that steer it, on the source host.

:meth:`SourceMigration.live_migration` is called by the source compute manager
after the destination's ``pre_live_migration``.  It validates every value that names
the destination before the first libvirt call, loads the convergence policies, builds
the destination XML (:mod:`.xml_rewrite`), flags and parameters (:mod:`.migrate`),
starts the blocking ``migrateToURI3`` in a worker thread (:mod:`.job`) and runs the
shared monitor (:func:`virtsdk.live_migration.monitor.monitor_migration`) in the calling
thread.  It ends in exactly one of ``post_method`` (the guest runs on the destination)
or ``recover_method`` (it still runs here; the failure is then re-raised).
:meth:`live_migration_abort` / :meth:`live_migration_force_complete` act on the running
job from another thread (an API call).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import libvirt
from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import PostMethod, ProgressCallback, RecoverMethod
from virtsdk.exceptions import MigrationError, MigrationNotFound, UnsafePath
from virtsdk.live_migration.base import ConvergencePolicy
from virtsdk.live_migration.loader import load_configured_policies
from virtsdk.live_migration.monitor import monitor_migration
from virtsdk.objects import Instance, LiveMigrateData, Migration
from virtsdk.validation import validate_hostname
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.live_migration import migrate
from virtsdk_libvirt.live_migration.job import (
    JobCompletedListener,
    LibvirtMigrationJob,
    ensure_event_loop,
)
from virtsdk_libvirt.live_migration.xml_rewrite import DestinationSpec, rewrite_for_destination
from virtsdk_libvirt.migrate_data import LibvirtLiveMigrateData
from virtsdk_libvirt.paths import InstancePaths

LOG = logging.getLogger(__name__)

GiB = 1024**3
MiB = 1024**2
#: seconds the migration thread waits, after the call returned, for the job-completed
#: event (libvirt queues it as the job ends; delivery may trail the call's return)
COMPLETED_EVENT_WAIT_S = 5.0
#: seconds of guest activity a pre-migration dirty-rate measurement covers
DIRTY_RATE_CALC_S = 1


def measure_dirty_rate(dom: libvirt.virDomain, seconds: int = DIRTY_RATE_CALC_S,
                       timeout: float = 10.0) -> float:
    """The guest's dirty rate in bytes/s, measured by QEMU (``calc-dirty-rate``,
    page sampling) over ``seconds`` before the migration starts; 0.0 when it cannot
    be measured (older QEMU, a guest that is not running)."""
    try:
        dom.startDirtyRateCalc(seconds, 0)
        deadline = time.monotonic() + timeout
        time.sleep(seconds)
        while time.monotonic() < deadline:
            [(_dom, stats)] = dom.connect().domainListGetStats(
                [dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
            if stats.get("dirtyrate.calc_status") == libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
                return float(stats.get("dirtyrate.megabytes_per_second", 0)) * MiB
            time.sleep(0.2)
        LOG.info("dirty rate of %s not measured within %.0fs", dom.name(), timeout)
    except (libvirt.libvirtError, ValueError) as exc:
        LOG.info("dirty rate of %s not measured: %s", dom.name(), exc)
    return 0.0


#: the vCPU bandwidth period (µs) of a CPU limit; longer only where the quota would fall
#: under libvirt's 1 ms minimum (a 99% limit: 1 ms of every 100 ms)
CPU_LIMIT_PERIOD_US = 10_000
_MIN_QUOTA_US = 1_000
_MAX_PERIOD_US = 1_000_000


def cpu_limit_bandwidth(percent: int) -> tuple[int, int]:
    """``(vcpu_period, vcpu_quota)`` in µs that take ``percent`` of each vCPU's time
    away in slices of milliseconds (the guest runs ``quota`` of every ``period``)."""
    share = (100 - min(99, max(1, int(percent)))) / 100.0
    period = min(_MAX_PERIOD_US, max(CPU_LIMIT_PERIOD_US, math.ceil(_MIN_QUOTA_US / share)))
    return period, max(_MIN_QUOTA_US, round(period * share))


def _set_vcpu_limit(dom: libvirt.virDomain, percent: int) -> None:
    period, quota = cpu_limit_bandwidth(percent)
    dom.setSchedulerParametersFlags({"vcpu_period": period, "vcpu_quota": quota},
                                    libvirt.VIR_DOMAIN_AFFECT_LIVE)
    LOG.info("vCPUs of %s limited to %d us of every %d us for the migration", dom.name(),
             quota, period)


#: rounds of "measure the dirty rate under the limit, raise it" before the start, and
#: the seconds each measurement covers
CALIBRATION_ROUNDS = 3
CALIBRATION_S = 2


def calibrate_vcpu_limit(dom: libvirt.virDomain, percent: int,
                         policies: Sequence[ConvergencePolicy]) -> int:
    """Measure the limited guest's dirty rate and let the policies raise the limit
    (:meth:`ConvergencePolicy.limit_measured`), a few rounds at most; returns the limit
    in force.  A guest that uses part of its CPU slows down only once the limit cuts
    into that part, which no measurement at full speed shows."""
    for _round in range(CALIBRATION_ROUNDS):
        dirty = measure_dirty_rate(dom, CALIBRATION_S)
        if dirty <= 0:
            break
        wanted = max(p.limit_measured(percent, dirty) for p in policies)
        if wanted <= percent:
            break
        _set_vcpu_limit(dom, wanted)
        percent = wanted
    return percent


def limit_vcpus(dom: libvirt.virDomain, percent: int) -> Callable[[], None]:
    """Limit the running guest's vCPUs to ``100 - percent`` of their time through their
    CFS bandwidth (``virDomainSetSchedulerParameters``, live only; libvirt refuses it
    while a migration job runs, so this is done before the job starts).  Returns the
    call that restores the previous values.  Raises libvirtError where the host has no
    cgroup cpu controller."""
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    before = dom.schedulerParametersFlags(live)
    _set_vcpu_limit(dom, percent)
    old = {k: before[k] for k in ("vcpu_period", "vcpu_quota") if k in before}

    def restore() -> None:
        try:
            dom.setSchedulerParametersFlags(old, live)
        except libvirt.libvirtError as exc:
            LOG.warning("vCPU limit of %s not lifted: %s", dom.name(), exc)

    return restore


def destination_spec(data: LiveMigrateData, src_instance_dir: str,
                     src_image_cache: str) -> DestinationSpec:
    """What the rewrite needs, from the destination's ``pre_live_migration`` answer
    (validated: it crossed hosts; the destination's instance directory must be a
    normal absolute path named like the source's, i.e. after the instance UUID)."""
    moves: list[tuple[str, str]] = []
    dd = LibvirtLiveMigrateData.of(data)
    if dd.dest_instance_dir:
        dst_dir = dd.dest_instance_dir
        if os.path.basename(dst_dir) != os.path.basename(src_instance_dir):
            raise UnsafePath(dst_dir, "<the destination's instances directory>")
        moves.append((src_instance_dir, dst_dir))
    if dd.dest_image_cache:
        moves.append((src_image_cache, dd.dest_image_cache))
    return DestinationSpec(
        vnc_listen=data.graphics_listen_addr_vnc,
        spice_listen=data.graphics_listen_addr_spice,
        serial_listen=data.serial_listen_addr,
        serial_ports=tuple(data.serial_listen_ports),
        path_moves=tuple(moves),
        vifs=tuple(data.vifs),
        volumes=tuple(data.bdms),
    ).validated()


class SourceMigration:
    """The migration itself, on the source host: the options (``[live_migration]``
    policies, bandwidth and monitor interval; ``[libvirt] live_migration_*``), this
    host's name (for messages), its libvirt :class:`Host` (its URI for the migration's
    own connection), its instance paths and the driver's domain lookup.  It owns the
    running jobs of this host, by instance UUID (:attr:`jobs`), which abort and force
    complete act on."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        lv_conf: cfg.ConfigOpts.GroupAttr,
        hostname: str,
        host: Host,
        paths: InstancePaths,
        lookup: Callable[[Instance], libvirt.virDomain],
    ) -> None:
        self.conf = conf
        self.lv_conf = lv_conf  # the [libvirt] group
        self.host = hostname
        self._host = host
        self._paths = paths
        self._lookup = lookup
        #: the running jobs of this host by instance UUID
        self.jobs: dict[str, LibvirtMigrationJob] = {}

    def live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        post_method: PostMethod,
        recover_method: RecoverMethod,
        block_migration: bool = False,
        migrate_data: LiveMigrateData | None = None,
        migration: Migration | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Source host: move the running guest to ``dest``; blocks until it ended.

        Invalid ``dest`` / destination address / directories, and a second migration
        of an instance already migrating, raise before any libvirt call and before
        either callback (nothing started, nothing to recover).  After
        that, exactly one of ``post_method`` / ``recover_method`` is called; a failure
        is re-raised after ``recover_method``.
        """
        running = self.jobs.get(instance.uuid)
        if running is not None and not running.done:
            raise MigrationError(f"{instance.name} is already being live-migrated from "
                                 f"{self.host}")
        data = LibvirtLiveMigrateData.of(
            migrate_data.copy() if migrate_data is not None else None)
        if data.block_migration is None:
            data.block_migration = block_migration
        validate_hostname(dest)
        target = data.target_connect_addr or dest
        dest_uri = migrate.destination_uri(self.lv_conf, target)
        data_uri = migrate.migrate_uri(target)
        src_dir = str(self._paths.instance_dir(instance))
        spec = destination_spec(data, src_dir, str(self._paths.image_cache))
        policies = load_configured_policies(self.conf)
        flags = migrate.migration_flags(
            self.lv_conf, bool(block_migration),
            set().union(*(p.migration_flags() for p in policies)))

        try:
            job = self._prepare_job(instance, target, dest_uri, data_uri, spec, flags,
                                       bool(block_migration), policies)
        except Exception:
            LOG.exception("live migration of %s could not start", instance.uuid)
            recover_method(context, instance, dest, data)
            raise
        self.jobs[instance.uuid] = job
        job.start()
        try:
            final = monitor_migration(
                job, policies, progress,
                interval=self.conf.live_migration.monitor_interval,
                sleep=job.wait,  # wakes up as soon as the job ends
                data_gb=self._data_gb(instance, bool(block_migration)))
        except BaseException:
            LOG.exception("monitoring the migration of %s failed; aborting", instance.uuid)
            self._abandon(job)
            self.jobs.pop(instance.uuid, None)
            if job.succeeded():
                post_method(context, instance, dest, bool(block_migration), data)
            else:
                job.lift_source_limits()
                recover_method(context, instance, dest, data)
            raise
        job.wait()
        self.jobs.pop(instance.uuid, None)
        if final.job_type == "completed" and job.succeeded():
            # a measurement or None, never QEMU's estimate
            data.downtime_ms = final.downtime_ms if final.downtime_measured else None
            data.data_processed = final.data_processed
            data.migration_call = str(job.result)
            post_method(context, instance, dest, bool(block_migration), data)
            return
        job.lift_source_limits()
        recover_method(context, instance, dest, data)
        raise job.failure()

    def _prepare_job(self, instance: Instance, target: str, dest_uri: str, data_uri: str,
                        spec: DestinationSpec, flags: int, block_migration: bool,
                        policies: Sequence[ConvergencePolicy] = ()) -> LibvirtMigrationJob:
        """Everything up to (not including) the migration call: the domain, its
        migratable XML rewritten for the destination, the parameters (with the
        policies' start parameters, from a dirty rate measured now when one wants it)."""
        dom = self._lookup(instance)
        src_xml = xmlutil.parse(dom.XMLDesc(
            libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE))
        dest_xml = None
        if self.lv_conf.live_migration_rewrite_xml:
            dest_xml = xmlutil.to_string(rewrite_for_destination(copy.deepcopy(src_xml), spec))
        bandwidth = (self.lv_conf.live_migration_bandwidth
                     or self.conf.live_migration.bandwidth)
        policy_params: dict[str, int] = {}
        if any(p.wants_dirty_rate for p in policies):
            dirty = measure_dirty_rate(dom)
            for policy in policies:
                policy_params.update(policy.migration_params(bandwidth * MiB, dirty))
        cpu_limit = policy_params.pop("cpu_limit", 0)
        if cpu_limit and dest_xml is None:
            # the destination starts from the definition read before the limit
            dest_xml = xmlutil.to_string(src_xml)
        params = migrate.migration_params(
            dest_xml=dest_xml, data_uri=data_uri, bandwidth_mib=bandwidth,
            disks=migrate.local_disk_targets(src_xml) if block_migration else None,
            parallel_connections=self.lv_conf.live_migration_parallel_connections,
            policy_params=policy_params,
            postcopy_bandwidth_mib=self.conf.live_migration.postcopy_bandwidth)
        moved = [src for src, _dst in spec.path_moves]
        uuid = dom.UUIDString()
        src_uri = self._host.uri
        completed: list[dict[str, Any]] = []

        def run() -> str:
            # A connection of its own: the call blocks for the whole migration and must
            # not hold up the driver's shared connection (job stats, abort, other guests).
            # It also carries the job-completed event with the final statistics.
            ensure_event_loop()
            conn = libvirt.open(src_uri)
            try:
                own = conn.lookupByUUIDString(uuid)
                listener = JobCompletedListener(conn, own)
                try:
                    call = migrate.start_migration(own, dest_uri, params, flags, src_xml,
                                                   moved)
                    stats = listener.wait(COMPLETED_EVENT_WAIT_S)
                    if stats is not None:
                        completed.append(stats)
                    return call
                finally:
                    listener.close()
            finally:
                conn.close()

        def completed_stats() -> dict[str, Any] | None:
            if completed:
                return completed[0]
            return self._completed_stats(dom, dest_uri, uuid)

        LOG.info("live-migrating %s to %s (flags %#x, params %s)", instance.uuid, dest_uri,
                 flags, sorted(params))
        job = LibvirtMigrationJob(dom, run, completed_stats,
                                  postcopy_permitted=bool(flags & libvirt.VIR_MIGRATE_POSTCOPY))
        if cpu_limit:
            try:
                job.restore_source = limit_vcpus(dom, cpu_limit)
                calibrate_vcpu_limit(dom, cpu_limit, policies)
            except libvirt.libvirtError as exc:
                LOG.warning("CPU limit of %s refused: %s", instance.uuid, exc)
                job.lift_source_limits()
                for policy in policies:
                    policy.params_refused("cpu_limit", str(exc))
        return job

    @staticmethod
    def _completed_stats(dom: libvirt.virDomain, dest_uri: str,
                            uuid: str) -> dict[str, Any] | None:
        """Statistics of the completed job when its event did not come: kept by
        libvirt on the source domain if it still exists, else on the destination."""
        flag = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
        try:
            return dict(dom.jobStats(flag))
        except libvirt.libvirtError:
            pass
        conn = libvirt.openReadOnly(dest_uri)
        try:
            return dict(conn.lookupByUUIDString(uuid).jobStats(flag))
        finally:
            conn.close()

    def _data_gb(self, instance: Instance, block_migration: bool) -> float:
        gb = instance.flavor.memory_mb / 1024
        if block_migration:
            gb += instance.flavor.root_gb + instance.flavor.ephemeral_gb
        return gb

    @staticmethod
    def _abandon(job: LibvirtMigrationJob) -> None:
        """Make sure a job nobody watches any more stops: abortJob (a p2p job would
        otherwise go on without a client), then wait for the worker."""
        try:
            job.abort()
        except Exception:  # post-copy started, or the job just ended
            LOG.exception("abortJob failed")
        job.wait()

    def live_migration_abort(self, instance: Instance) -> None:
        """Source host, from another thread while ``live_migration`` runs: cancel the
        job (``abortJob``); the guest keeps running here and ``live_migration`` ends
        in ``recover_method``.  Raises MigrationNotFound when nothing runs."""
        job = self.jobs.get(instance.uuid)
        if job is None or job.done:
            raise MigrationNotFound(f"no live migration of {instance.name} runs on {self.host}")
        job.abort()

    def live_migration_force_complete(self, instance: Instance) -> None:
        """Source host, while ``live_migration`` runs: switch to post-copy when the job
        was started with POSTCOPY, otherwise pause the guest so it converges."""
        job = self.jobs.get(instance.uuid)
        if job is None or job.done:
            raise MigrationNotFound(f"no live migration of {instance.name} runs on {self.host}")
        if job.postcopy_permitted:
            job.start_postcopy()
        else:
            job.pause()
