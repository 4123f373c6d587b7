"""A fence around everything one compute-service incarnation may change.

A compute service that crashes leaves threads behind only when it is simulated in a
process that lives on (:meth:`virtsdk.cloud.EmbeddedCloud.stop_compute` with
``crash=True``); a real crash kills them.  To make the simulation honest, the manager
reaches its database, its driver and its RPC clients only through :meth:`Fence.guard`
proxies.  :meth:`Fence.close` (service stop) waits for any guarded database call in
progress, then every later call from that incarnation raises :class:`ServiceFenced`,
so a handler that wakes up after the restart cannot overwrite what recovery settled.

:class:`ServiceFenced` derives from ``BaseException`` on purpose: the flows'
``except Exception`` clean-up paths must not run (they would try to write too); the
thread simply ends, as the process it belonged to has.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar, cast

T = TypeVar("T")


class ServiceFenced(BaseException):  # noqa: N818 - a signal to unwind, not an error
    """The compute service this thread belongs to was stopped: stop touching state."""


class Fence:
    """One generation of a compute service (see the module docstring)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._lock = threading.RLock()
        self._closed = False
        #: calls refused after :meth:`close` (tests wait on it to know a zombie ended)
        self.refused = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Fence this generation off; returns once no guarded call is running."""
        with self._lock:
            self._closed = True

    def check(self) -> None:
        """Raise ServiceFenced if the service was stopped."""
        if self._closed:
            with self._lock:
                self.refused += 1
            raise ServiceFenced(f"{self.owner}: service stopped; call refused")

    def guard(self, target: T, serialize: bool = False) -> T:
        """A proxy of ``target`` whose method calls first :meth:`check`.  With
        ``serialize`` the call runs under the fence lock, so :meth:`close` cannot
        return while it is half done (used for the database)."""
        return cast(T, _Guarded(target, self, serialize))


class _Guarded:
    __slots__ = ("_fence", "_serialize", "_target")

    def __init__(self, target: Any, fence: Fence, serialize: bool) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_fence", fence)
        object.__setattr__(self, "_serialize", serialize)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or name.startswith("__"):
            return value
        fence: Fence = self._fence
        serialize: bool = self._serialize

        def call(*args: Any, **kwargs: Any) -> Any:
            if not serialize:
                fence.check()
                return value(*args, **kwargs)
            with fence._lock:  # noqa: SLF001 - the fence's own proxy
                fence.check()
                return value(*args, **kwargs)
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)
