"""The default scheduler: filter the hosts, weigh the survivors, return the best.

Registered as ``filter_scheduler`` in the entry-point group ``virtsdk.schedulers``.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.exceptions import Invalid, NoValidHost
from virtsdk.scheduler.base import RequestSpec, Scheduler
from virtsdk.scheduler.filters import ALL_FILTERS, BaseFilter
from virtsdk.scheduler.weights import ALL_WEIGHERS, BaseWeigher, normalise


class FilterScheduler(Scheduler):
    """Filters from ``[scheduler] enabled_filters``, weighers from ``weighers``."""

    name = "filter_scheduler"

    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        super().__init__(conf, db)
        self.filters: list[BaseFilter] = [
            _lookup(ALL_FILTERS, name, "filter")(conf)
            for name in conf.scheduler.enabled_filters]
        self.weighers: list[BaseWeigher] = [
            _lookup(ALL_WEIGHERS, name, "weigher")() for name in conf.scheduler.weighers]

    def select_destinations(
        self, context: RequestContext, spec: RequestSpec, max_hosts: int = 1
    ) -> list[str]:
        """Hosts passing every filter, best weight first (ties: by name), at most
        ``max_hosts``.  NoValidHost lists how many hosts each filter removed."""
        hosts = self.host_states()
        total = len(hosts)
        removed: list[str] = []
        for flt in self.filters:
            before = len(hosts)
            hosts = [h for h in hosts if flt.host_passes(h, spec)]
            if len(hosts) != before:
                removed.append(f"{flt.name} removed {before - len(hosts)}")
            if not hosts:
                break
        if not hosts:
            why = "; ".join(removed) or "no compute host has reported resources"
            raise NoValidHost(
                f"no valid host for flavor {spec.flavor.name!r} among {total} "
                f"host(s): {why}")
        scores = [0.0] * len(hosts)
        for weigher in self.weighers:
            raw = [weigher.weigh(h, spec) for h in hosts]
            for i, w in enumerate(normalise(raw)):
                scores[i] += weigher.multiplier * w
        ranked = sorted(zip(scores, [h.host for h in hosts], strict=True),
                        key=lambda sh: (-sh[0], sh[1]))
        return [name for _, name in ranked[:max_hosts]]


def _lookup(table: dict[str, type], name: str, kind: str) -> type:
    try:
        return table[name]
    except KeyError:
        raise Invalid(
            f"unknown scheduler {kind} {name!r}; known: {', '.join(sorted(table))}"
        ) from None
