"""Claims on hosts' resources, atomic in the database: the scheduler's move and boot
claims, the live-migration slots and what a host has claimed.

Functions on an open session of :class:`virtsdk.db.api.Database`, which calls them
inside its own transactions (its public ``claim_*``, ``host_usage`` and
``migration_claim_live_slot`` methods are the callers' way in).  Every claim and slot
check starts with :func:`lock_hosts`, so two processes claiming on one host run one
after the other, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from virtsdk.db import convert
from virtsdk.db.models import ClaimRow, InstanceRow, MigrationRow, ServiceRow, utcnow
from virtsdk.db.records import HostUsage
from virtsdk.services import COMPUTE
from virtsdk.states import MigrationStatus, MigrationType, SlotClaim

#: statuses in which a migration holds resources (the same tuples as ``db.api``)
COLD_IN_PROGRESS = (
    MigrationStatus.PRE_MIGRATING, MigrationStatus.MIGRATING,
    MigrationStatus.POST_MIGRATING, MigrationStatus.FINISHED,
    MigrationStatus.CONFIRMING, MigrationStatus.REVERTING,
)
LIVE_IN_PROGRESS = (
    MigrationStatus.ACCEPTED, MigrationStatus.QUEUED, MigrationStatus.PREPARING,
    MigrationStatus.RUNNING, MigrationStatus.POSTCOPY,
)
LIVE_ACTIVE = (MigrationStatus.PREPARING, MigrationStatus.RUNNING, MigrationStatus.POSTCOPY)
IN_PROGRESS = COLD_IN_PROGRESS + LIVE_IN_PROGRESS


def lock_hosts(s: Session, hosts: Iterable[str]) -> None:
    """Take the write lock of each host's compute service row, in name order (no
    deadlock between two claimers): a no-op UPDATE, which PostgreSQL turns into a row
    lock and SQLite into the database write lock, both held until the transaction
    ends."""
    for host in sorted(set(hosts)):
        s.execute(update(ServiceRow).where(
            ServiceRow.host == host, ServiceRow.binary == COMPUTE).values(
            report_count=ServiceRow.report_count).execution_options(
            synchronize_session=False))


def host_usage(s: Session, host: str, exclude_claim_of: str | None = None) -> HostUsage:
    """Resources claimed on ``host``: its instances (current flavor), plus incoming
    migrations in progress (new flavor), the source copy of resizes not yet confirmed
    or reverted (old flavor) and the scheduler's claims for moves no migration record
    counts yet (except ``exclude_claim_of``'s)."""
    rows = s.scalars(select(InstanceRow).where(
        InstanceRow.deleted.is_(False), InstanceRow.host == host)).all()
    here = {r.uuid for r in rows}
    flavors = [convert.flavor(r.flavor) for r in rows]
    migs = s.scalars(select(MigrationRow).where(
        MigrationRow.status.in_([str(x) for x in IN_PROGRESS]),
        (MigrationRow.source_host == host) | (MigrationRow.dest_host == host))).all()
    incoming = {m.instance_uuid for m in migs if m.dest_host == host}
    for m in migs:
        if m.source_host == m.dest_host:  # same-host resize holds both sizes
            flavors.append(convert.flavor(m.new_flavor))
        elif m.instance_uuid in here:
            continue  # counted once with its current flavor
        elif m.dest_host == host:  # incoming claim
            flavors.append(convert.flavor(m.new_flavor or m.old_flavor))
        elif m.migration_type != str(MigrationType.LIVE):  # kept source copy
            flavors.append(convert.flavor(m.old_flavor))
    known = [f for f in flavors if f is not None]
    claims = [c for c in s.scalars(select(ClaimRow).where(ClaimRow.host == host))
              if c.consumer != exclude_claim_of and c.consumer not in incoming]
    return HostUsage(
        vcpus=sum(f.vcpus for f in known) + sum(c.vcpus for c in claims),
        memory_mb=sum(f.memory_mb for f in known) + sum(c.memory_mb for c in claims),
        disk_gb=sum(f.root_gb + f.ephemeral_gb for f in known)
        + sum(c.disk_gb for c in claims),
    )


def claim_move(s: Session, host: str, consumer: str, need: HostUsage,
               room: Callable[[HostUsage], bool]) -> bool:
    """Claim ``need`` on ``host`` for a move of instance ``consumer`` if ``room``
    says it fits; replaces the consumer's previous claim.  False: nothing claimed."""
    lock_hosts(s, [host])
    release(s, consumer)
    if not room(host_usage(s, host, exclude_claim_of=consumer)):
        return False
    s.add(ClaimRow(consumer=consumer, host=host, vcpus=need.vcpus,
                   memory_mb=need.memory_mb, disk_gb=need.disk_gb))
    return True


def boot_fits(s: Session, host: str, room: Callable[[HostUsage], bool]) -> bool:
    """Lock ``host`` and say whether ``room`` accepts what is claimed there now (a
    boot then places the instance in the same transaction)."""
    lock_hosts(s, [host])
    return room(host_usage(s, host))


def claim_of(s: Session, consumer: str) -> tuple[str, HostUsage] | None:
    """The consumer's pending move claim: (host, resources), or None."""
    row = s.scalar(select(ClaimRow).where(ClaimRow.consumer == consumer))
    if row is None:
        return None
    return row.host, HostUsage(row.vcpus, row.memory_mb, row.disk_gb)


def release(s: Session, consumer: str, host: str | None = None) -> None:
    """Drop the consumer's claims (only the one on ``host`` if given)."""
    stmt = delete(ClaimRow).where(ClaimRow.consumer == consumer)
    if host is not None:
        stmt = stmt.where(ClaimRow.host == host)
    s.execute(stmt)


def claim_live_slot(s: Session, row: MigrationRow, max_outbound: int,
                    max_inbound: int) -> SlotClaim:
    """Move queued live migration ``row`` to 'preparing' if its source and its
    destination have a free slot.  Call with both hosts locked (:func:`lock_hosts`)
    and ``row`` refreshed after the lock."""
    if row.status != MigrationStatus.QUEUED:
        return SlotClaim.SETTLED
    active = [str(x) for x in LIVE_ACTIVE]
    base = select(MigrationRow.id).where(
        MigrationRow.migration_type == str(MigrationType.LIVE),
        MigrationRow.status.in_(active), MigrationRow.id != row.id)
    outbound = len(s.scalars(base.where(MigrationRow.source_host == row.source_host)).all())
    inbound = len(s.scalars(base.where(MigrationRow.dest_host == row.dest_host)).all())
    if (max_outbound and outbound >= max_outbound) or (
            max_inbound and inbound >= max_inbound):
        return SlotClaim.WAIT
    row.status = str(MigrationStatus.PREPARING)
    row.updated_at = utcnow()
    return SlotClaim.STARTED
