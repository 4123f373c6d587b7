"""What the libvirt driver reports as held for the audit, for states a lab flow does
not leave behind (a resize copy whose migration is gone, a receive nobody finished,
foreign domains): real libvirt (its built-in ``test:///default`` hypervisor) and a
real instances directory."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from virtsdk_libvirt.guest_config import METADATA_NS
from virtsdk_libvirt.inventory import PROBE_PREFIX, held_on_host
from virtsdk_libvirt.live_migration.pre import INCOMING_MARKER
from virtsdk_libvirt.paths import RESIZE_SUFFIX

from virtsdk.driver import HELD_INCOMING, HELD_INSTANCE, HELD_LEFTOVER, HELD_RESIZE_COPY

DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>1024</memory><os><type>hvm</type></os>{meta}</domain>"""
META = f"<metadata><virtsdk:instance xmlns:virtsdk='{METADATA_NS}'/></metadata>"


class Domains:
    """Domains defined by one test on the test hypervisor; removed afterwards."""

    def __init__(self) -> None:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open("test:///default")
        self.made: list[libvirt.virDomain] = []

    def define(self, running: bool, ours: bool = True) -> str:
        uuid = str(uuidlib.uuid4())
        dom = self.conn.defineXML(DOMAIN.format(name=f"inv-{uuid[:8]}", uuid=uuid,
                                                meta=META if ours else ""))
        self.made.append(dom)
        if running:
            dom.create()
        return uuid

    def close(self) -> None:
        for dom in self.made:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        self.conn.close()


@pytest.fixture
def domains() -> Iterator[Domains]:
    d = Domains()
    try:
        yield d
    finally:
        d.close()


def test_every_combination_of_domain_and_directories(domains: Domains,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "instances"
    root.mkdir()
    running = domains.define(running=True)
    (root / running).mkdir()
    (root / running / "disk").write_bytes(b"x")
    # a resize in progress or forgotten: the source domain off, its files in _resize
    resizing = domains.define(running=False)
    (root / (resizing + RESIZE_SUFFIX)).mkdir()
    # a guest with a kept copy too (e.g. a revert that failed half way)
    both = domains.define(running=True)
    (root / both).mkdir()
    (root / (both + RESIZE_SUFFIX)).mkdir()
    stopped = domains.define(running=False)  # defined but off, disks elsewhere
    live_target, cold_target, leftover, kept_only = (str(uuidlib.uuid4()) for _ in range(4))
    (root / live_target).mkdir()
    (root / live_target / INCOMING_MARKER).touch()
    (root / cold_target).mkdir()
    (root / cold_target / f"{PROBE_PREFIX}1234").touch()
    (root / cold_target / "disk").write_bytes(b"partial")
    (root / leftover).mkdir()
    (root / leftover / "disk").write_bytes(b"x")
    (root / (kept_only + RESIZE_SUFFIX)).mkdir()
    # never listed: a domain some other tool defined, the image cache, odd names
    foreign = domains.define(running=True, ours=False)
    for name in ("_base", "not-a-uuid", leftover.upper(), f"{uuidlib.uuid4()}_old"):
        (root / name).mkdir()
    (root / str(uuidlib.uuid4())).write_text("a file, not a directory")

    held = held_on_host(domains.conn, root)
    assert held == {
        running: [HELD_INSTANCE],
        resizing: [HELD_RESIZE_COPY],
        both: [HELD_INSTANCE, HELD_RESIZE_COPY],
        stopped: [HELD_INSTANCE],
        live_target: [HELD_INCOMING],
        cold_target: [HELD_INCOMING],
        leftover: [HELD_LEFTOVER],
        kept_only: [HELD_RESIZE_COPY],
    }
    assert foreign not in held


def test_a_missing_instances_directory_lists_the_domains(domains: Domains,
                                                         tmp_path: Path) -> None:
    uuid = domains.define(running=True)
    assert held_on_host(domains.conn, tmp_path / "absent") == {uuid: [HELD_INSTANCE]}
