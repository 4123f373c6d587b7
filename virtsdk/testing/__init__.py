"""The driver-author kit (pytest needed).

:class:`DriverConformance` (:mod:`virtsdk.testing.conformance`) is the conformance
suite a driver's repository subclasses; :mod:`virtsdk.testing.observe` holds the
invariants it shares with ``virtsdk drivers check``; :mod:`virtsdk.testing.plugin` is the
``pytest11`` plugin that turns on assertion rewriting for the kit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DriverConformance"]


def __getattr__(name: str) -> Any:
    # imported lazily so the pytest plugin can register assertion rewriting first
    if name == "DriverConformance":
        from virtsdk.testing.conformance import DriverConformance

        return DriverConformance
    raise AttributeError(name)
