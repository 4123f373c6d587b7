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

    def set_cpu_throttle(self, percent: int) -> None:
        """Throttle the guest's vCPUs to ``100 - percent`` of their time (0 stops
        throttling); raises NotSupported where the job cannot."""
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
    #: throttle the guest's CPU by ``value`` percent (0 stops throttling)
    THROTTLE: ClassVar[str] = "throttle"
    #: nothing to apply: a decision worth recording in the timeline (``reason``)
    NOTE: ClassVar[str] = "note"


class ConvergencePolicy(Plugin, abc.ABC):
    """Decides, sample by sample, how to make a migration converge (or give up).

    One policy object serves one migration: :meth:`start` is called once with the
    amount of data to move, then :meth:`decide` with every sample.
    """

    #: True when :meth:`migration_params` needs the guest's dirty rate measured before
    #: the migration starts (a driver then measures it; it costs about a second)
    wants_dirty_rate: ClassVar[bool] = False

    def migration_flags(self) -> set[str]:
        """Flags the job must start with for this policy (e.g. ``auto_converge``,
        ``postcopy``: libvirt must be told before the migration starts)."""
        return set()

    def migration_params(self, bandwidth_bps: float, dirty_rate_bps: float) -> dict[str, int]:
        """Parameters the job must start with, from the bandwidth cap and the dirty
        rate measured before the migration started (0 when unknown): ``cpu_limit``
        (percent of the vCPUs' time taken away for the whole migration, in fine
        slices), ``cpu_throttle_initial`` / ``cpu_throttle_increment`` (percent, QEMU's
        auto-converge steps).  A driver that cannot apply one calls
        :meth:`params_refused`.  Called once,
        before :meth:`start`; default: none."""
        return {}

    def limit_measured(self, cpu_limit: int, dirty_rate_bps: float) -> int:
        """The guest's dirty rate measured again before the start, with the
        ``cpu_limit`` start parameter applied; returns the limit to use (the same value
        keeps it; the driver applies a higher one and asks again, a few times at most).
        A guest's dirty rate falls with its CPU time only once the limit is below what
        it uses, so the first limit is a guess this corrects.  Default: keep."""
        return cpu_limit

    def params_refused(self, name: str, reason: str) -> None:
        """The driver could not apply the start parameter ``name`` (from
        :meth:`migration_params`) and the migration runs without it; default: ignore."""

    def start(self, data_gb: float) -> None:
        """Called once before the first sample with RAM + disk to move, in GiB."""
        self.data_gb = data_gb

    @abc.abstractmethod
    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        """Actions to apply now (usually none)."""
