"""What the conformance kit and ``virtsdk drivers check`` observe, and the invariants
they hold a driver to.  Everything here reads the hypervisor's truth through the
observation hooks of :class:`~virtsdk.driver.ComputeDriver` and returns plain
problem descriptions (empty list = fine), so the pytest kit and the CLI share them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from virtsdk.driver import ComputeDriver, feature_methods
from virtsdk.exceptions import NotSupported
from virtsdk.objects import Instance
from virtsdk.rpc.serializer import VirtObjectSerializer
from virtsdk.states import PowerState

T = TypeVar("T")

_SERIALIZER = VirtObjectSerializer()


class ConformanceFailure(AssertionError):
    """A driver broke the contract; the message says what was observed."""


def round_trip(value: T, what: str) -> T:
    """``value`` after the trip every RPC argument and reply takes (serializer, JSON
    text, serializer); fails unless the copy compares equal to the original."""
    try:
        text = json.dumps(_SERIALIZER.serialize_entity(None, value))
    except TypeError as exc:
        raise ConformanceFailure(f"{what} cannot cross RPC: {exc}") from None
    back: Any = _SERIALIZER.deserialize_entity(None, json.loads(text))
    if back != value:
        raise ConformanceFailure(f"{what} changed crossing RPC: sent {value!r}, "
                                 f"received {back!r}")
    return back  # type: ignore[no-any-return]


def claimed_call(driver: ComputeDriver, flag: str | None, method: str,
                 *args: Any, **kwargs: Any) -> Any:
    """Call ``driver.method``; a driver that claims ``flag`` but answers with
    ``NotImplementedError`` or ``NotSupported`` fails conformance."""
    fn: Callable[..., Any] = getattr(driver, method)
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, NotSupported) as exc:
        if flag is None or not getattr(driver.capabilities, flag, False):
            raise
        raise ConformanceFailure(
            f"driver {driver.name!r} claims {flag} but {method}() raised "
            f"{type(exc).__name__}: {exc}") from None


def missing_methods(driver_cls: type[ComputeDriver]) -> list[str]:
    """Claimed features whose methods the class does not override."""
    implemented = set(driver_cls.implemented_methods())
    out = []
    for flag in driver_cls.capabilities.claimed():
        missing = [m for m in feature_methods(flag) if m not in implemented]
        if missing:
            out.append(f"{flag} is claimed but {', '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} not implemented")
    return out


def guests(drivers: Sequence[ComputeDriver], instance: Instance) -> dict[str, PowerState]:
    """Host -> state of every live (running or paused) copy of ``instance``."""
    out = {}
    for drv in drivers:
        state = drv.observe_guests().get(instance.uuid)
        if state is not None:
            out[drv.host] = state
    return out


def copies_problems(drivers: Sequence[ComputeDriver], instance: Instance, moment: str,
                    running_on: str | None, allow_paused: bool = False) -> list[str]:
    """Exactly one running copy on ``running_on`` (none at all when ``None``), and no
    paused copy unless ``allow_paused``."""
    seen = guests(drivers, instance)
    running = sorted(h for h, s in seen.items() if s == PowerState.RUNNING)
    paused = sorted(h for h, s in seen.items() if s == PowerState.PAUSED)
    problems = []
    expected = [running_on] if running_on else []
    if running != expected:
        problems.append(f"{moment}: the guest should run on {expected or 'no host'} but "
                        f"runs on {running or 'no host'}")
    if paused and not allow_paused:
        problems.append(f"{moment}: a paused copy of the guest is left on {paused}")
    return problems


def at_most_one_running(drivers: Sequence[ComputeDriver], instance: Instance,
                        moment: str) -> list[str]:
    """Never two running copies (during a migration one may be paused)."""
    seen = guests(drivers, instance)
    running = sorted(h for h, s in seen.items() if s == PowerState.RUNNING)
    if len(running) > 1:
        return [f"{moment}: the guest runs on {len(running)} hosts at once: {running}"]
    return []


def clean_problems(driver: ComputeDriver, instance: Instance, moment: str) -> list[str]:
    """Nothing of ``instance`` left on ``driver``'s host."""
    left = driver.observe_footprint(instance)
    if left:
        return [f"{moment}: host {driver.host!r} still holds {left}"]
    return []


def marker_problems(driver: ComputeDriver, instance: Instance, marker: bytes,
                    moment: str) -> list[str]:
    """The disk on ``driver``'s host still holds ``marker``."""
    seen = driver.observe_disk(instance).marker[:len(marker)]
    if seen != marker:
        return [f"{moment}: the disk on {driver.host!r} lost its data: expected marker "
                f"{marker!r}, read {seen!r}"]
    return []


def info_problems(driver: ComputeDriver, instance: Instance, moment: str) -> list[str]:
    """get_info must agree with what the hypervisor really runs."""
    info = driver.get_info(instance)
    real = driver.observe_guests().get(instance.uuid, PowerState.SHUTDOWN)
    problems = []
    if (info.state == PowerState.RUNNING) != (real == PowerState.RUNNING):
        problems.append(f"{moment}: get_info on {driver.host!r} says {info.state.name} but "
                        f"the hypervisor has the guest {real.name}")
    round_trip(info, f"{moment}: get_info's InstanceInfo")
    return problems


def check(problems: list[str]) -> None:
    """Raise one :class:`ConformanceFailure` listing every problem."""
    if problems:
        raise ConformanceFailure("; ".join(problems))
