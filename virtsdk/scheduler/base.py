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
from virtsdk.objects import Flavor, HostResources
from virtsdk.plugins import Plugin
from virtsdk.resources import with_usage
from virtsdk.services import COMPUTE


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

    @abc.abstractmethod
    def select_destinations(
        self, context: RequestContext, spec: RequestSpec, max_hosts: int = 1
    ) -> list[str]:
        """Up to ``max_hosts`` hosts able to take ``spec``, best first; the first is
        the choice and the rest are alternates for reschedules.  Raises
        :class:`~virtsdk.exceptions.NoValidHost` saying why when none fits."""
