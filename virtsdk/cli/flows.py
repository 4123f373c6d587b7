"""Flow-level conformance: the four migration flows through an embedded cloud.

:func:`check_driver` (``virtsdk drivers check NAME``) boots a two-host
:class:`~virtsdk.cloud.EmbeddedCloud` on the named driver and runs cold migration +
confirm, resize + confirm, resize + revert and live migration through the public API,
holding the driver to the invariants of :mod:`virtsdk.testing.observe` after every
flow: exactly one running copy on the host the records name, nothing left on the
other host, the disk marker intact, the disk grown by a resize; then the instance is
deleted and nothing of it may remain anywhere.  Flows whose capability the driver does
not claim are skipped.  Needs no pytest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from virtsdk.cloud import EmbeddedCloud
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import VirtSDKError
from virtsdk.objects import ImageMeta, Instance
from virtsdk.states import VMState
from virtsdk.testing.observe import (
    ConformanceFailure,
    clean_problems,
    copies_problems,
    marker_problems,
)

HOSTS = ("check-a", "check-b")
#: boot image of the checked guests (a driver may need a real one: ``image=``)
IMAGE = ImageMeta(id="check-image", name="check-image")


@dataclass
class FlowResult:
    """One row of ``virtsdk drivers check``."""

    flow: str
    result: str  # "passed" | "failed" | "skipped"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class _Run:
    def __init__(self, cloud: EmbeddedCloud, image: ImageMeta) -> None:
        self.cloud = cloud
        self.api, self.ctx = cloud.api, cloud.ctx
        self.hosts = (cloud.hosts[0], cloud.hosts[1])
        self.image = image

    @property
    def drivers(self) -> list[ComputeDriver]:
        return [self.cloud.computes[h].driver for h in self.hosts]

    def driver(self, host: str) -> ComputeDriver:
        return self.cloud.computes[host].driver

    def instance(self, uuid_: str) -> Instance:
        return self.cloud.db.instance_get(uuid_)

    def settle(self, inst: Instance, expect: VMState, moment: str) -> Instance:
        now = self.api.wait(self.ctx, inst.uuid, timeout=300)
        if now.vm_state != expect:
            raise ConformanceFailure(f"{moment}: the instance ended {now.vm_state}, "
                                     f"expected {expect}")
        return now

    def other(self, host: str) -> ComputeDriver:
        return self.driver(self.hosts[1] if host == self.hosts[0] else self.hosts[0])

    def placed(self, inst: Instance, marker: bytes, moment: str) -> list[str]:
        host = str(inst.host)
        return (copies_problems(self.drivers, inst, moment, host)
                + clean_problems(self.other(host), inst, f"{moment}, other host")
                + marker_problems(self.driver(host), inst, marker, moment))

    def boot(self) -> tuple[Instance, bytes]:
        inst = self.api.create_instance(self.ctx, f"check-{uuid.uuid4().hex[:6]}",
                                        "check.small", image=self.image, host=self.hosts[0])
        inst = self.settle(inst, VMState.ACTIVE, "after boot")
        marker = f"virtsdk-check:{inst.uuid}".encode()[:ComputeDriver.MARKER_SIZE]
        self.driver(self.hosts[0]).write_disk_marker(inst, marker)
        return inst, marker

    def delete(self, inst: Instance) -> list[str]:
        self.api.delete_instance(self.ctx, inst.uuid)
        self.api.wait(self.ctx, inst.uuid, timeout=300)
        problems = copies_problems(self.drivers, inst, "after delete", None)
        for drv in self.drivers:
            problems += clean_problems(drv, inst, "after delete")
        return problems

    # -- the four flows ----------------------------------------------------------------

    def migrate_confirm(self, inst: Instance, marker: bytes) -> list[str]:
        self.api.migrate(self.ctx, inst.uuid, host=self.hosts[1])
        inst = self.settle(inst, VMState.RESIZED, "after migrate")
        problems = copies_problems(self.drivers, inst, "after migrate", self.hosts[1])
        problems += marker_problems(self.driver(self.hosts[1]), inst, marker, "after migrate")
        self.api.confirm_resize(self.ctx, inst.uuid)
        inst = self.settle(inst, VMState.ACTIVE, "after confirm")
        return problems + self.placed(inst, marker, "after confirm")

    def resize_confirm(self, inst: Instance, marker: bytes) -> list[str]:
        before = self.driver(self.hosts[0]).observe_disk(inst).size
        self.api.resize(self.ctx, inst.uuid, "check.big")
        inst = self.settle(inst, VMState.RESIZED, "after resize")
        after = self.driver(str(inst.host)).observe_disk(inst).size
        problems = [] if after > before else [
            f"after resize: the root disk did not grow ({before} -> {after} bytes)"]
        self.api.confirm_resize(self.ctx, inst.uuid)
        inst = self.settle(inst, VMState.ACTIVE, "after confirm")
        return problems + self.placed(inst, marker, "after resize + confirm")

    def resize_revert(self, inst: Instance, marker: bytes) -> list[str]:
        self.api.resize(self.ctx, inst.uuid, "check.big")
        self.settle(inst, VMState.RESIZED, "after resize")
        self.api.revert_resize(self.ctx, inst.uuid)
        inst = self.settle(inst, VMState.ACTIVE, "after revert")
        problems = [] if inst.host == self.hosts[0] else [
            f"after revert: the records place the instance on {inst.host}"]
        return problems + self.placed(inst, marker, "after resize + revert")

    def live(self, inst: Instance, marker: bytes) -> list[str]:
        self.api.live_migrate(self.ctx, inst.uuid, host=self.hosts[1])
        inst = self.settle(inst, VMState.ACTIVE, "after live migration")
        problems = [] if inst.host == self.hosts[1] else [
            f"after live migration: the records place the instance on {inst.host}"]
        return problems + self.placed(inst, marker, "after live migration")


FLOWS: tuple[tuple[str, str, Callable[[_Run, Instance, bytes], list[str]]], ...] = (
    ("cold migration + confirm", "supports_cold_migration", _Run.migrate_confirm),
    ("resize + confirm", "supports_resize", _Run.resize_confirm),
    ("resize + revert", "supports_resize", _Run.resize_revert),
    ("live migration", "supports_live_migration", _Run.live),
)


def check_driver(name: str, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 host_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                 hosts: tuple[str, str] = HOSTS, image: ImageMeta = IMAGE,
                 ) -> list[FlowResult]:
    """Run the four flows on driver ``name`` between ``hosts`` (each configured with
    ``overrides`` plus its ``host_overrides``), booting ``image``; one
    :class:`FlowResult` per flow."""
    cloud = EmbeddedCloud(hosts, name, overrides=overrides, host_overrides=host_overrides)
    results: list[FlowResult] = []
    with cloud:
        run = _Run(cloud, image)
        run.api.flavor_create(run.ctx, "check.small", memory_mb=128, vcpus=1, root_gb=1)
        run.api.flavor_create(run.ctx, "check.big", memory_mb=256, vcpus=1, root_gb=2)
        caps = run.driver(hosts[0]).capabilities
        for title, flag, flow in FLOWS:
            if not getattr(caps, flag):
                results.append(FlowResult(title, "skipped", problems=[f"{flag} not claimed"]))
                continue
            started = time.monotonic()
            problems: list[str] = []
            inst: Instance | None = None
            try:
                inst, marker = run.boot()
                problems += flow(run, inst, marker)
            except (AssertionError, VirtSDKError, NotImplementedError) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
            finally:
                if inst is not None:
                    try:
                        problems += run.delete(inst)
                    except (AssertionError, VirtSDKError) as exc:
                        problems.append(f"delete: {type(exc).__name__}: {exc}")
            results.append(FlowResult(title, "failed" if problems else "passed",
                                      time.monotonic() - started, problems))
    return results
