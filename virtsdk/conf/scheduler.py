"""Options of the ``[scheduler]`` and ``[api]`` groups."""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.conf.groups import register_group

scheduler_group = cfg.OptGroup("scheduler", title="Choosing hosts")
api_group = cfg.OptGroup("api", title="The public Python API")

scheduler_opts = [
    cfg.StrOpt("driver", default="filter_scheduler",
               help="Entry-point name (group virtsdk.schedulers) of the scheduler."),
    cfg.ListOpt("enabled_filters",
                default=["ComputeFilter", "IgnoreHostsFilter", "RamFilter",
                         "CoreFilter", "DiskFilter"],
                help="Filters a host must pass, by class name, in order."),
    cfg.ListOpt("weighers", default=["RamWeigher"],
                help="Weighers that rank the hosts that passed, by class name."),
    cfg.FloatOpt("ram_allocation_ratio", default=1.0, min=0.0,
                 help="Virtual RAM per physical RAM the RAM filter allows."),
    cfg.FloatOpt("cpu_allocation_ratio", default=4.0, min=0.0,
                 help="Virtual CPUs per physical CPU the core filter allows."),
    cfg.FloatOpt("disk_allocation_ratio", default=1.0, min=0.0,
                 help="Virtual disk per physical disk the disk filter allows."),
    cfg.IntOpt("max_attempts", default=3, min=1,
               help="Hosts a cold migration tries before giving up (the chosen one "
                    "plus alternates for reschedules)."),
]

api_opts = [
    cfg.BoolOpt("allow_resize_to_same_host", default=False,
                help="Let a resize pick the instance's own host."),
    cfg.BoolOpt("allow_migrate_to_same_host", default=False,
                help="Let a cold migration (no flavor change) pick the instance's own "
                     "host."),
    cfg.FloatOpt("rpc_call_timeout", default=60.0, min=0.1,
                 help="Seconds the API and the conductor wait for a synchronous RPC "
                      "call."),
    cfg.FloatOpt("lost_request_timeout", default=180.0, min=1.0,
                 help="Seconds after which the conductor clears the task of an instance "
                      "whose migration request never became a flow (the API's call to "
                      "the conductor timed out and its message was lost, e.g. with a "
                      "broker restart): no migration in progress, the conductor not "
                      "handling it.  The action ends saying so.  Keep it well above "
                      "rpc_call_timeout; checked every quarter of it."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    register_group(conf, scheduler_group, scheduler_opts)
    register_group(conf, api_group, api_opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(scheduler_group.name, scheduler_opts), (api_group.name, api_opts)]
