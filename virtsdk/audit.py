"""``virtsdk audit``: hypervisor reality against the database, for every host.

Who calls it: the ``virtsdk audit`` command and tests.  It asks every compute host
over RPC (so it works the same in one process or on a deployment) what its
hypervisor holds, compares it with the database with the rules of
:mod:`virtsdk.compute.reconcile` and, with ``fix``, has each host remove what is
safely orphaned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg

from virtsdk.compute.reconcile import SERVICE, Difference, find_differences
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.exceptions import Conflict, InstanceNotFound
from virtsdk.objects import HostResources


@dataclass
class AuditReport:
    """What :func:`audit_cloud` found (after fixing, with ``fix``)."""

    differences: list[Difference] = field(default_factory=list)
    fixed: list[Difference] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)



def _held_of(reply: Mapping[str, Any]) -> tuple[dict[str, list[str]] | None,
                                                HostResources | None]:
    held = reply.get("held")
    res = reply.get("resources")
    return (None if held is None else {str(k): list(v) for k, v in held.items()},
            None if res is None else HostResources.from_primitive(res))


def audit_cloud(conf: cfg.ConfigOpts, db: Database, ctx: RequestContext,
                fix: bool = False) -> AuditReport:
    """Ask every compute host what its hypervisor holds (RPC ``audit_host``),
    compare with the database, and with ``fix`` have each host remove what is
    safely orphaned (RPC ``audit_fix``, which checks again before it removes).
    Hosts whose service is down, or whose driver cannot list, are differences."""
    rpc = ComputeAPI(conf)
    report = AuditReport()
    passes = 3 if fix else 1  # a fix can make more safe (leftovers of an adopted guest)
    for attempt in range(passes):
        listings: dict[str, dict[str, list[str]]] = {}
        resources: dict[str, HostResources | None] = {}
        broken: list[Difference] = []
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for svc in db.service_get_all():
            if not svc.is_up(conf.compute.service_down_time, now):
                broken.append(Difference(svc.host, "", SERVICE,
                                         "compute service is down: not audited"))
                continue
            try:
                held, res = _held_of(rpc.audit_host(ctx, svc.host))
            except Exception as exc:  # noqa: BLE001 - reported, the rest is audited
                broken.append(Difference(svc.host, "", SERVICE, f"audit failed: "
                                         f"{type(exc).__name__}: {exc}"))
                continue
            if held is None:
                broken.append(Difference(svc.host, "", SERVICE, "the driver cannot list "
                                         "what it holds: not audited"))
                continue
            listings[svc.host], resources[svc.host] = held, res
        diffs = list(broken)
        for host, held in listings.items():
            others = {h: v for h, v in listings.items() if h != host}
            diffs.extend(find_differences(db, host, held, resources[host], others))
        report.hosts = sorted({*listings, *(d.host for d in broken)})
        report.differences = diffs
        if not fix or attempt == passes - 1:
            break
        todo = [d for d in diffs if d.fixable and not d.adopt]
        for diff in diffs:
            if diff.fixable and diff.adopt:
                try:  # only while nothing acts on the instance
                    db.instance_update(diff.instance_uuid, {"host": diff.host,
                                                            "node": diff.host},
                                       expected_task_state=None)
                    report.fixed.append(diff)
                except (Conflict, InstanceNotFound):
                    pass
        if not todo and not any(d.fixable for d in diffs):
            break
        for host in sorted({d.host for d in todo}):
            mine = [d.to_primitive() for d in todo if d.host == host]
            done = rpc.audit_fix(ctx, host, mine)
            report.fixed.extend(Difference.from_primitive(d) for d in done)
    return report
