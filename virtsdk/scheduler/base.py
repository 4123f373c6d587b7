"""The scheduler contract and the request it answers.

Who calls it: the conductor (in its own process), to pick a destination for a cold
migration, a resize or a live migration without a requested host, and the API when it
boots an instance.  A scheduler is replaceable: any class registered in the
entry-point group ``virtsdk.schedulers`` and named by ``[scheduler] driver``.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.db.records import HostUsage
from virtsdk.exceptions import NoValidHost
from virtsdk.objects import Flavor, HostResources
from virtsdk.plugins import Plugin
from virtsdk.resources import AllocationRatios, fits, with_usage
from virtsdk.services import COMPUTE

#: "as many hosts as pass": candidates for a claim
_ALL = 1 << 30


@dataclass
class RequestSpec:
    """What to place: a flavor, hosts to avoid and the instance it is for."""

    flavor: Flavor
    instance_uuid: str = ""
    ignore_hosts: list[str] = field(default_factory=list)
    #: hosts the result must come from (empty: any)
    force_hosts: list[str] = field(default_factory=list)


@dataclass
class HostState:
    """One candidate host: its capacity, what is claimed on it and whether it is up."""

    host: str
    resources: HostResources
    is_up: bool
    disabled: bool = False
    capabilities: dict[str, object] = field(default_factory=dict)


class Scheduler(Plugin, abc.ABC):
    """Base class of schedulers (see the module docstring)."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        self.conf = conf
        self.db = db

    def host_states(self) -> list[HostState]:
        """Every registered compute host, with usage recomputed from the database
        (instances plus in-progress migration claims) over the capacity its driver
        last reported.  Hosts that never reported resources are left out."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        out = []
        for svc in self.db.service_get_all(COMPUTE):
            if svc.resources is None:
                continue
            res = with_usage(svc.resources, self.db.host_usage(svc.host))
            out.append(HostState(
                host=svc.host, resources=res,
                is_up=svc.is_up(self.conf.compute.service_down_time, now),
                disabled=svc.disabled, capabilities=svc.capabilities))
        return out

    def claim(self, spec: RequestSpec, host: str, boot: bool = False) -> bool:
        """Claim ``spec``'s flavor on ``host`` for instance ``spec.instance_uuid``,
        atomically in the database (Nova's scheduler claims allocations the same
        way): a boot places the instance there, a move records a claim that lives
        until the instance's task ends.  False if it no longer fits."""
        svc = self.db.service_get(host)
        if svc is None or svc.resources is None:
            return False
        capacity, flavor = svc.resources, spec.flavor
        ratios = AllocationRatios.from_conf(self.conf)

        def room(used: HostUsage) -> bool:
            return fits(with_usage(capacity, used), flavor, ratios)

        if boot:
            return self.db.claim_boot(spec.instance_uuid, host, room)
        need = HostUsage(vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                         disk_gb=flavor.root_gb + flavor.ephemeral_gb)
        return self.db.claim_move(host, spec.instance_uuid, need, room)

    def select_and_claim(self, context: RequestContext, spec: RequestSpec,
                         max_hosts: int = 1, boot: bool = False) -> list[str]:
        """:meth:`select_destinations`, then a claim on the best host that still
        has room (a concurrent request may have taken the last slot meanwhile).
        Returns the claimed host first, then up to ``max_hosts - 1`` alternates
        (unclaimed: a reschedule claims its own).  NoValidHost if every candidate
        was taken."""
        hosts = self.select_destinations(context, spec, max_hosts=_ALL)
        for host in hosts:
            if self.claim(spec, host, boot):
                return [host, *[h for h in hosts if h != host][:max_hosts - 1]]
        raise NoValidHost(f"no valid host for flavor {spec.flavor.name!r}: every host "
                          f"that fits ({', '.join(hosts)}) was claimed by concurrent "
                          "requests")

    @abc.abstractmethod
    def select_destinations(
        self, context: RequestContext, spec: RequestSpec, max_hosts: int = 1
    ) -> list[str]:
        """Up to ``max_hosts`` hosts able to take ``spec``, best first; the first is
        the choice and the rest are alternates for reschedules.  Raises
        :class:`~virtsdk.exceptions.NoValidHost` saying why when none fits."""
