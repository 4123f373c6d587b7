"""Options of the fake driver, group ``[fake]`` (the driver's entry-point name)."""

from __future__ import annotations

from oslo_config import cfg

opts: list[cfg.Opt] = [
    cfg.StrOpt("fabric", default="default",
               help="Name of the fabric this host joins.  Every FakeDriver with the same "
                    "fabric name (in one process, or in every process naming the same "
                    "fabric_dir) sees the same hosts."),
    cfg.StrOpt("fabric_dir", default=None,
               help="Share the fabric's hosts with other processes through this "
                    "directory (one compute service per process, e.g. a multi-process "
                    "cloud on the fake driver).  Unset: the fabric lives in this process "
                    "only, which is fastest."),
    cfg.DictOpt("stall_steps", default={},
                help="Fault-injection steps at which this process's hosts stall, "
                     "step:SECONDS (0: until the process ends), e.g. "
                     "'migrate_disk.transfer:0'.  For crash tests of services running "
                     "in their own processes (kill -9 at a known point)."),
    cfg.FloatOpt("time_scale", default=0.01, min=0.0,
                 help="Real seconds per simulated second (0.01: simulated time runs 100x "
                      "faster).  0 makes every simulated wait instant."),
    cfg.IntOpt("memory_kib_per_mb", default=1, min=1, max=1024,
               help="Bytes of real guest memory kept per MiB of flavor memory, in KiB "
                    "(1: a 2048 MiB guest keeps 2 MiB of real, checkable memory)."),
    cfg.IntOpt("host_vcpus", default=16, min=1, help="vCPUs of every fake host."),
    cfg.IntOpt("host_memory_mb", default=65536, min=1, help="RAM (MiB) of every fake host."),
    cfg.IntOpt("host_local_gb", default=1000, min=1, help="Local disk (GiB) of every host."),
    cfg.DictOpt("host_capacity", default={},
                help="Per-host capacity overrides, host:VCPUS/MEMORY_MB/LOCAL_GB, e.g. "
                     "'small:2/4096/40,big:64/262144/4000'."),
    cfg.BoolOpt("enforce_capacity", default=True,
                help="Refuse (InsufficientResources) to place an instance on a host "
                     "without the free vCPUs, RAM and disk its flavor needs."),
    cfg.BoolOpt("shared_storage", default=False,
                help="All hosts of the fabric share one instance store: live migration "
                     "moves only memory and block migration is refused."),
    cfg.IntOpt("link_bandwidth_mbps", default=1024, min=1,
               help="Simulated network speed between hosts, MiB/s (memory and disks)."),
    cfg.IntOpt("host_link_mbps", default=0, min=0,
               help="Simulated capacity of each host's network link, MiB/s, shared "
                    "equally by the live migrations leaving it and, separately, by those "
                    "entering it: a migration gets the least of link_bandwidth_mbps, its "
                    "source's share and its destination's share, re-evaluated at every "
                    "sample of its job.  0: links are not shared (every migration gets "
                    "link_bandwidth_mbps).  Shared only among the migrations of one "
                    "process."),
    cfg.FloatOpt("default_dirty_rate_mbps", default=0.0, min=0.0,
                 help="Guest memory dirty rate (MiB/s) of instances that set no "
                      "'fake:dirty_rate_mbps' metadata."),
    cfg.IntOpt("initial_max_downtime_ms", default=300, min=1,
               help="Max downtime a live migration starts with (QEMU's default)."),
    cfg.FloatOpt("sample_step_s", default=0.05, min=0.001,
                 help="Simulated seconds per integration step of the pre-copy model."),
]


def list_opts() -> list[cfg.Opt]:
    return opts
