"""The periodic reconcile task of one compute host (Nova's periodic clean-up tasks).

Who calls it: :class:`virtsdk.compute.service.ComputeService` every ``[compute]
reconcile_interval`` seconds, and the manager's RPC methods ``audit_host`` /
``audit_fix`` (``virtsdk audit``).  It compares what this host's hypervisor holds
with the database (:func:`find_differences`), removes what stayed
safely orphaned for ``[compute] reconcile_grace`` seconds and logs the rest.

What the hypervisor holds comes from the driver's optional
:meth:`~virtsdk.driver.ComputeDriver.list_instance_uuids_on_host`.  A holding is
*in use* while a migration in progress involves this host.  Otherwise it is a
:class:`Difference`; it is *fixable* (safely orphaned) when removing it cannot lose
the last copy of a guest:

=================  ===================================================  ==========
held               when it is a difference                              fixable
=================  ===================================================  ==========
anything           the database does not know the instance or deleted   yes
                   it
``instance``       the database places the instance on another host     if that
                                                                        host runs
                                                                        it too;
                                                                        if that
                                                                        host has
                                                                        no guest,
                                                                        the record
                                                                        follows
                                                                        this one
``resize_copy``    no migration in progress                             unless it
                                                                        is the only
                                                                        copy
``incoming``       no migration in progress                             yes
``leftover``       no migration in progress                             unless it
                                                                        is the only
                                                                        copy
(nothing)          the database places a settled instance here          no
``usage``          the hypervisor uses more RAM / vCPUs than the        no
                   database claims on the host
=================  ===================================================  ==========
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from virtsdk.context import RequestContext
from virtsdk.db.api import IN_PROGRESS, Database
from virtsdk.driver import (
    HELD_INCOMING,
    HELD_INSTANCE,
    HELD_LEFTOVER,
    HELD_RESIZE_COPY,
    ComputeDriver,
)
from virtsdk.exceptions import InstanceNotFound, NotSupported
from virtsdk.objects import (
    ColdMigrateData,
    Flavor,
    HostResources,
    Instance,
    Migration,
    NetworkInfo,
)
from virtsdk.states import MigrationType, VMState

LOG = logging.getLogger(__name__)

#: what a usage row or a host that could not be audited is "holding"
USAGE, SERVICE = "usage", "service"
_SETTLED_HERE = (VMState.ACTIVE, VMState.STOPPED, VMState.RESIZED)


@dataclass(frozen=True)
class Difference:
    """One way a host's hypervisor and the database disagree."""

    host: str
    instance_uuid: str
    held: str
    problem: str
    fixable: bool = False
    #: the fix is in the database: the instance record moves to this host (the
    #: only one that runs the guest), nothing on the hypervisor is removed
    adopt: bool = False

    def to_primitive(self) -> dict[str, Any]:
        return {"host": self.host, "instance_uuid": self.instance_uuid, "held": self.held,
                "problem": self.problem, "fixable": self.fixable, "adopt": self.adopt}

    @classmethod
    def from_primitive(cls, data: Mapping[str, Any]) -> Difference:
        return cls(str(data["host"]), str(data["instance_uuid"]), str(data["held"]),
                   str(data["problem"]), bool(data["fixable"]),
                   bool(data.get("adopt", False)))



def _instance(db: Database, uuid: str) -> Instance | None:
    try:
        return db.instance_get(uuid, read_deleted=True)
    except InstanceNotFound:
        return None


def find_differences(
    db: Database, host: str, held: Mapping[str, list[str]],
    resources: HostResources | None,
    elsewhere: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> list[Difference]:
    """The differences of ``host`` (see the module table).  ``elsewhere`` (what
    the other hosts hold, when known) lets a guest defined on two hosts be fixed
    here when the host the database names runs it."""
    out: list[Difference] = []
    for uuid, kinds in sorted(held.items()):
        inst = _instance(db, uuid)
        if inst is None or inst.vm_state == VMState.DELETED:
            why = "unknown to the database" if inst is None else "deleted in the database"
            out.extend(Difference(host, uuid, k, why, True) for k in kinds)
            continue
        busy = [m for m in db.migration_get_all(instance_uuid=uuid, statuses=IN_PROGRESS)
                if host in (m.source_host, m.dest_host)]
        if busy:
            continue
        for kind in kinds:
            diff = _judge(host, uuid, kind, kinds, inst, elsewhere)
            if diff is not None:
                out.append(diff)
    for inst in db.instance_get_all(host=host):
        if inst.uuid in held or inst.task_state is not None or \
                inst.vm_state not in _SETTLED_HERE:
            continue
        out.append(Difference(host, inst.uuid, "", f"the database places this "
                              f"{inst.vm_state} instance here; the hypervisor has "
                              "nothing of it"))
    if resources is not None:
        claimed = db.host_usage(host)
        if resources.memory_mb_used > claimed.memory_mb or \
                resources.vcpus_used > claimed.vcpus:
            out.append(Difference(host, "", USAGE, (
                f"the hypervisor uses {resources.memory_mb_used} MiB / "
                f"{resources.vcpus_used} vCPUs, the database claims {claimed.memory_mb} "
                f"MiB / {claimed.vcpus} vCPUs")))
    return out


def _judge(host: str, uuid: str, kind: str, kinds: list[str], inst: Instance,
           elsewhere: Mapping[str, Mapping[str, list[str]]] | None) -> Difference | None:
    defined_here = HELD_INSTANCE in kinds
    if kind == HELD_INSTANCE:
        if inst.host == host:
            return None
        there = None if elsewhere is None else elsewhere.get(str(inst.host), {}).get(uuid)
        twin = there is not None and HELD_INSTANCE in there
        problem = f"defined here but the database places it on {inst.host!r}"
        if twin:
            return Difference(host, uuid, kind, problem + ", which runs it too", True)
        defined_elsewhere = elsewhere is not None and any(
            HELD_INSTANCE in held.get(uuid, []) for h, held in elsewhere.items()
            if h != host)
        if elsewhere is not None and not defined_elsewhere and inst.task_state is None:
            return Difference(host, uuid, kind, problem + ", which has no guest of it: "
                              "the record follows the guest", True, adopt=True)
        return Difference(host, uuid, kind, problem)
    if kind == HELD_RESIZE_COPY:
        only_copy = inst.host == host and not defined_here
        return Difference(host, uuid, kind, "kept resize copy with no migration in "
                          "progress" + ("; it is the only copy: reset the instance"
                                        if only_copy else ""), not only_copy)
    if kind == HELD_INCOMING:
        return Difference(host, uuid, kind, "incoming placeholder or disks with no "
                          "migration in progress", True)
    if kind == HELD_LEFTOVER:
        only_copy = inst.host == host and not defined_here
        return Difference(host, uuid, kind, "disks left by a block migration with no "
                          "migration in progress" + ("; they may be the only copy"
                                                     if only_copy else ""), not only_copy)
    return Difference(host, uuid, kind, f"unknown holding {kind!r}")


def remove_orphan(ctx: RequestContext, db: Database, driver: ComputeDriver,
                  diff: Difference) -> None:
    """Remove one fixable holding with the driver's own clean-up steps (on the
    host that holds it).  A step the driver does not offer is skipped."""
    inst = _instance(db, diff.instance_uuid) or Instance(
        name=diff.instance_uuid, flavor=Flavor(name="unknown", memory_mb=0, vcpus=0,
                                               root_gb=0), uuid=diff.instance_uuid)
    net = NetworkInfo()
    steps: list[Any] = []
    if diff.held == HELD_INSTANCE:
        steps = [lambda: driver.destroy(ctx, inst, net, destroy_disks=True)]
    elif diff.held == HELD_RESIZE_COPY:
        mine = [m for m in db.migration_get_all(instance_uuid=inst.uuid)
                if m.source_host == diff.host and m.migration_type != MigrationType.LIVE]
        migration = mine[-1] if mine else Migration(
            instance_uuid=inst.uuid, migration_type=MigrationType.MIGRATION,
            source_host=diff.host, dest_host=inst.host, old_flavor=inst.flavor,
            new_flavor=inst.flavor)
        steps = [lambda: driver.confirm_migration(ctx, migration, inst, net)]
    elif diff.held == HELD_INCOMING:
        steps = [lambda: driver.rollback_live_migration_at_destination(
                     ctx, inst, net, True, None),
                 lambda: driver.abort_migrate_disk_target(ctx, inst, ColdMigrateData())]
    elif diff.held == HELD_LEFTOVER:
        steps = [lambda: driver.post_live_migration_at_source(ctx, inst, net)]
    for step in steps:
        try:
            step()
        except NotSupported:
            continue



class Reconciler:
    """Reconciles one host (see the module docstring)."""

    def __init__(self, host: str, db: Database, driver: ComputeDriver, grace: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.db = db
        self.driver = driver
        self.grace = grace
        self._clock = clock
        #: (uuid, held) -> when it was first seen safely orphaned
        self._first_seen: dict[tuple[str, str], float] = {}

    def holdings(self) -> dict[str, Any]:
        """For ``virtsdk audit``: {"held": {uuid: [kinds]} or None if the driver
        cannot list, "resources": HostResources primitive}."""
        try:
            held: dict[str, list[str]] | None = self.driver.list_instance_uuids_on_host()
        except NotSupported:
            held = None
        res = self.driver.get_available_resource(self.host)
        return {"held": held, "resources": res.to_primitive()}

    def differences(self) -> list[Difference]:
        """This host's differences now; [] if the driver cannot list."""
        try:
            held = self.driver.list_instance_uuids_on_host()
        except NotSupported:
            return []
        return find_differences(self.db, self.host, held,
                                self.driver.get_available_resource(self.host))

    def fix(self, ctx: RequestContext,
            wanted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Remove the ``wanted`` differences that are still there and still safe
        (checked again here: a flow may have started meanwhile).  A guest defined
        here that the database places elsewhere is removed only when the caller
        saw it running there.  Returns the ones removed."""
        now = {(d.instance_uuid, d.held): d for d in self.differences()}
        done = []
        for item in wanted:
            asked = Difference.from_primitive(item)
            seen = now.get((asked.instance_uuid, asked.held))
            if seen is None or not asked.fixable:
                continue
            if not seen.fixable and asked.held != HELD_INSTANCE:
                continue
            LOG.warning("audit on %s: removing %s of %s (%s)", self.host, asked.held,
                        asked.instance_uuid, asked.problem)
            remove_orphan(ctx, self.db, self.driver, asked)
            done.append(asked.to_primitive())
        return done

    def run(self, ctx: RequestContext) -> list[Difference]:
        """One periodic pass: remove what stayed safely orphaned for the grace
        period, log everything else.  Returns what is left."""
        diffs = self.differences()
        now = self._clock()
        current = {(d.instance_uuid, d.held) for d in diffs if d.fixable}
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in current}
        removed = False
        for diff in diffs:
            key = (diff.instance_uuid, diff.held)
            if diff.fixable and now - self._first_seen.setdefault(key, now) >= self.grace:
                LOG.warning("reconcile on %s: removing %s of %s (%s)", self.host,
                            diff.held, diff.instance_uuid, diff.problem)
                remove_orphan(ctx, self.db, self.driver, diff)
                self._first_seen.pop(key, None)
                removed = True
        left = self.differences() if removed else diffs
        for diff in left:
            LOG.warning("reconcile on %s: %s %s: %s", self.host, diff.held or "-",
                        diff.instance_uuid or "-", diff.problem)
        return left
