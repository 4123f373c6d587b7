"""The two contracts of live-migration monitoring: the job and the policy."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Protocol

from virtsdk.objects import JobStats
from virtsdk.plugins import Plugin


class MigrationJob(Protocol):
    """A driver's handle on one running live migration (source host).

    Implemented by each driver (libvirt: a virDomain and its job; fake: the simulated
    pre-copy).  Every method may be called from the monitor thread while the
    migration runs; ``abort`` and ``force_complete`` may also come from an API call.
    """

    def stats(self) -> JobStats:
        """A fresh sample; ``job_type`` is ``completed``/``failed``/``cancelled`` at the end."""
        ...

    def set_max_downtime(self, downtime_ms: int) -> None: ...

    def abort(self) -> None:
        """Cancel the job; the guest keeps running on the source."""
        ...

    def start_postcopy(self) -> None:
        """Switch to post-copy; raises NotSupported where the job cannot."""
        ...

    def pause(self) -> None:
        """Pause the guest so the remaining memory stops changing."""
        ...


@dataclass(frozen=True)
class Action:
    """What a policy wants done.  ``kind`` is one of the constants below."""

    kind: str
    value: int = 0
    reason: str = ""

    SET_DOWNTIME: ClassVar[str] = "set_downtime"
    ABORT: ClassVar[str] = "abort"
    POSTCOPY: ClassVar[str] = "postcopy"
    PAUSE: ClassVar[str] = "pause"


class ConvergencePolicy(Plugin, abc.ABC):
    """Decides, sample by sample, how to make a migration converge (or give up).

    One policy object serves one migration: :meth:`start` is called once with the
    amount of data to move, then :meth:`decide` with every sample.
    """

    def migration_flags(self) -> set[str]:
        """Flags the job must start with for this policy (e.g. ``auto_converge``,
        ``postcopy``: libvirt must be told before the migration starts)."""
        return set()

    def start(self, data_gb: float) -> None:
        """Called once before the first sample with RAM + disk to move, in GiB."""
        self.data_gb = data_gb

    @abc.abstractmethod
    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        """Actions to apply now (usually none)."""
