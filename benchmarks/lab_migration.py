"""Helpers the lab live-migration benchmarks share: a two-host lab, its drivers, and the
manager's call sequence around ``live_migration`` (checks, ``pre_live_migration``, then
the post steps or the rollback), which is the driver-author kit's
(:mod:`virtsdk.testing.sequences`): the benchmarks drive ``live_migration`` or ``virsh``
themselves in between."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.libvirt.tests.libvirt_lab import clean_lab_host, make_driver
from virtsdk.context import get_admin_context
from virtsdk.objects import Instance, LiveMigrateData, NetworkInfo
from virtsdk.testing import sequences

CTX = get_admin_context()
NET = NetworkInfo()


def two_host_lab(name: str) -> Iterator[Any]:
    """A two-host lab for one benchmark module (root only: skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from virtsdk_lab.lab import Lab

    with Lab(name=name, hosts=2) as the_lab:
        yield the_lab


def lab_guest_image() -> Any:
    """The lab's test guest (built once, cached)."""
    from virtsdk_lab.guest import build_guest_image

    return build_guest_image()


def lab_drivers(lab: Any) -> Iterator[tuple[Any, Any]]:
    """Drivers of the lab's first two hosts; cleans both hosts afterwards."""
    a, b = (make_driver(h) for h in lab.hosts[:2])
    yield a, b
    for d in (a, b):
        d.cleanup_host(d.host)
    for h in lab.hosts:
        clean_lab_host(h)


def prepare(src: Any, dst: Any, inst: Instance) -> LiveMigrateData:
    """The conductor's checks and the destination's ``pre_live_migration``
    (:func:`virtsdk.testing.sequences.prepare_live`)."""
    return sequences.prepare_live(src, dst, CTX, inst, network_info=NET)


def finish(src: Any, dst: Any, inst: Instance, data: LiveMigrateData) -> None:
    """The post steps of a migration that completed
    (:func:`virtsdk.testing.sequences.post_live`)."""
    sequences.post_live(src, dst, CTX, inst, data, NET)


def rollback(src: Any, dst: Any, inst: Instance, data: LiveMigrateData) -> None:
    """The rollback of a migration that did not complete
    (:func:`virtsdk.testing.sequences.rollback_live`)."""
    sequences.rollback_live(src, dst, CTX, inst, data, NET)
