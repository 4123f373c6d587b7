"""Former names of the conformance kit: :class:`DriverContractTests` is
:class:`virtsdk.testing.conformance.DriverConformance`; :class:`MethodRecorder` records
the live-migration callbacks a driver calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from virtsdk.context import RequestContext
from virtsdk.objects import Instance, LiveMigrateData
from virtsdk.testing.conformance import DriverConformance as DriverContractTests

__all__ = ["DriverContractTests", "MethodRecorder"]


@dataclass
class MethodRecorder:
    """Records calls of the ``post_method`` / ``recover_method`` given to
    ``live_migration``."""

    calls: list[str] = field(default_factory=list)

    def post(self, context: RequestContext, instance: Instance, dest: str,
             block_migration: bool, migrate_data: LiveMigrateData) -> None:
        self.calls.append("post")

    def recover(self, context: RequestContext, instance: Instance, dest: str,
                migrate_data: LiveMigrateData) -> None:
        self.calls.append("recover")
