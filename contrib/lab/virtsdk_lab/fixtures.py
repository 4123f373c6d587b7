"""Pytest plugin: the session-wide two-host ``lab`` and the ``guest_image`` fixtures.

Loaded by the repository's root ``conftest.py`` (``pytest_plugins``).  The lab is
brought up once per test session, the first time a test asks for it, and torn down
at the end of the session even if tests failed, the run was interrupted (an
``atexit`` hook and a SIGTERM handler back up the fixture finaliser), or ``up()``
itself failed half-way.  A run killed with SIGKILL leaves a stale lab that the next
``Lab.up()`` on the machine removes.  After the session, a check fails the run if
any process of a lab started here is still alive.

Missing prerequisites make the ``lab`` fixture *fail* (with the list of what is
missing), never skip: a CI run without a working lab must not look green.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from virtsdk_lab.errors import PrerequisitesMissing
from virtsdk_lab.guest.image import DEFAULT_CACHE_DIR, GuestImage, build_guest_image
from virtsdk_lab.lab import Lab
from virtsdk_lab.prereqs import check_prerequisites

LAB_HOSTS = 2
_started: list[Lab] = []


def started_labs() -> list[Lab]:
    """Every lab the ``lab`` fixture started in this process (for the leftover check)."""
    return list(_started)


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running two-host libvirt lab, shared by the whole test session.

    Tests must leave the hosts as they found them (destroy their domains, remove
    their files under ``instances_path``) since later tests reuse them.
    """
    missing = check_prerequisites(with_guest=False)
    if missing:
        pytest.fail(str(PrerequisitesMissing(missing)), pytrace=False)
    the_lab = Lab(name="vsdk", hosts=LAB_HOSTS)
    _started.append(the_lab)
    atexit.register(the_lab.down)
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    else:
        previous = None
    the_lab.up()
    try:
        yield the_lab
    finally:
        try:
            the_lab.down()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The test guest (kernel + initramfs), built once per recipe and cached.

    The cache directory is ``/var/cache/virtsdk/guest`` unless ``VIRTSDK_GUEST_CACHE``
    names another one.
    """
    missing = [m for m in check_prerequisites(with_guest=True) if "root" not in m]
    if missing:
        pytest.fail(str(PrerequisitesMissing(missing)), pytrace=False)
    cache = Path(os.environ.get("VIRTSDK_GUEST_CACHE", str(DEFAULT_CACHE_DIR)))
    return build_guest_image(cache)


def lab_leftovers() -> list[str]:
    """Processes still alive in any namespace of a lab this session started."""
    found: list[str] = []
    for the_lab in _started:
        found += the_lab.leftovers()
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down: fail the run if a lab left processes behind."""
    leftovers = lab_leftovers()
    if not leftovers:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "lab processes still running after the session:\n  " + "\n  ".join(leftovers)
    if reporter is not None:
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
