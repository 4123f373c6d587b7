"""The one check tests use to compare hypervisor reality with the database.

``assert_audit_clean(cloud)`` runs :func:`virtsdk.audit.audit_cloud` (the code of
``virtsdk audit``) over an embedded cloud and fails with every difference found;
``assert_holds(driver, expected)`` checks what one driver's hypervisor holds
(:meth:`~virtsdk.driver.ComputeDriver.list_instance_uuids_on_host`) for tests that
run drivers without a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from virtsdk.audit import AuditReport, audit_cloud
from virtsdk.driver import ComputeDriver


def assert_audit_clean(cloud: Any, fix: bool = False) -> AuditReport:
    """Audit every compute host of ``cloud``: no differences, every host audited.
    With ``fix`` the audit first removes what is safely orphaned; the report (with
    what it fixed) is returned."""
    report = audit_cloud(cloud.conf, cloud.db, cloud.ctx, fix=fix)
    assert report.differences == [], "\n".join(
        f"{d.host} {d.held or '-'} {d.instance_uuid or '-'}: {d.problem}"
        for d in report.differences)
    assert sorted(report.hosts) == sorted(cloud.computes), report.hosts
    return report


def assert_holds(driver: ComputeDriver, expected: Mapping[str, list[str]],
                 uuids: list[str] | None = None) -> None:
    """``driver``'s hypervisor holds exactly ``expected`` of the instances ``uuids``
    (default: of the instances named in ``expected``; an instance missing from
    ``expected`` must not be held at all)."""
    held = driver.list_instance_uuids_on_host()
    wanted = uuids if uuids is not None else list(expected)
    got = {u: sorted(held[u]) for u in wanted if u in held}
    assert got == {u: sorted(k) for u, k in expected.items() if k}, (
        f"{driver.host}: holds {got}, expected {dict(expected)}")
