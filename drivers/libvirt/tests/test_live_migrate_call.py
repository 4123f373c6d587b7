"""Flags, parameters, URIs and the migrateToURI3 call with its legacy fallback.

No hypervisor: flags/params are pure; the legacy fallback is exercised with a mock
domain because a real libvirt cannot be made to answer VIR_ERR_CONFIG_UNSUPPORTED.
"""

from __future__ import annotations

from unittest import mock

import libvirt
import pytest
from oslo_config import cfg
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.live_migration import migrate, opts
from virtsdk_libvirt.live_migration.job import job_stats_from_libvirt
from virtsdk_libvirt.live_migration.xml_rewrite import ListenAddressError

from virtsdk.exceptions import Invalid, InvalidHostname, MigrationError

BASE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


@pytest.fixture
def lv():
    conf = cfg.ConfigOpts()
    conf.register_opts(opts.list_opts(), group="libvirt")
    conf([], default_config_files=[])
    return conf, conf.libvirt


def test_default_flags(lv):
    _conf, group = lv
    assert migrate.migration_flags(group, False) == BASE
    assert migrate.migration_flags(group, True) == BASE | libvirt.VIR_MIGRATE_NON_SHARED_INC


def test_flags_from_options_and_policies(lv):
    conf, group = lv
    conf.set_override("live_migration_permit_auto_converge", True, "libvirt")
    conf.set_override("live_migration_with_native_tls", True, "libvirt")
    conf.set_override("live_migration_parallel_connections", 4, "libvirt")
    conf.set_override("live_migration_extra_flags", ["compressed"], "libvirt")
    flags = migrate.migration_flags(group, False, {"postcopy"})
    assert flags == (BASE | libvirt.VIR_MIGRATE_AUTO_CONVERGE | libvirt.VIR_MIGRATE_TLS
                     | libvirt.VIR_MIGRATE_PARALLEL | libvirt.VIR_MIGRATE_COMPRESSED
                     | libvirt.VIR_MIGRATE_POSTCOPY)
    with pytest.raises(Invalid, match="'warp'"):
        migrate.migration_flags(group, False, {"warp"})


def test_postcopy_dropped_for_block_migration(lv):
    conf, group = lv
    conf.set_override("live_migration_permit_post_copy", True, "libvirt")
    assert migrate.migration_flags(group, False) & libvirt.VIR_MIGRATE_POSTCOPY
    assert not migrate.migration_flags(group, True, {"postcopy"}) & libvirt.VIR_MIGRATE_POSTCOPY


def test_uris(lv):
    conf, group = lv
    assert migrate.destination_uri(group, "198.18.1.3") == "qemu+tcp://198.18.1.3/system"
    assert migrate.destination_uri(group, "fd00::3") == "qemu+tcp://[fd00::3]/system"
    assert migrate.migrate_uri("fd00::3") == "tcp://[fd00::3]"
    conf.set_override("live_migration_scheme", "tls", "libvirt")
    assert migrate.destination_uri(group, "hostb") == "qemu+tls://hostb/system"
    conf.set_override("live_migration_uri_template", "qemu+ssh://root@{host}/system",
                      "libvirt")
    assert migrate.destination_uri(group, "hostb") == "qemu+ssh://root@hostb/system"
    for bad in ("hostb/system?x=1", "a@b", "evil host", "", "h:1"):
        with pytest.raises(InvalidHostname):
            migrate.destination_uri(group, bad)
        with pytest.raises(InvalidHostname):
            migrate.migrate_uri(bad)


def test_params():
    p = migrate.migration_params(dest_xml="<domain/>", data_uri="tcp://h", bandwidth_mib=4,
                                 disks=["vda"], parallel_connections=2)
    assert p == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h",
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>",
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: "<domain/>",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 4,
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"],
        libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 2,
    }
    assert migrate.migration_params(dest_xml=None, data_uri="tcp://h", bandwidth_mib=0,
                                    disks=None, parallel_connections=0) == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h"}


def test_local_disk_targets_skip_volumes_cdroms_readonly():
    root = xmlutil.parse(
        "<domain><devices>"
        "<disk type='file' device='disk'><source file='/i/disk'/><target dev='vda'/></disk>"
        "<disk type='file' device='cdrom'><source file='/i/cd'/><target dev='hdc'/></disk>"
        "<disk type='file'><source file='/i/ro'/><readonly/><target dev='vdc'/></disk>"
        "<disk type='block'><source dev='/dev/v'/><target dev='vdd'/></disk>"
        "<disk type='file'><source file='/i/disk.local'/><target dev='vdb'/></disk>"
        "</devices></domain>")
    assert migrate.local_disk_targets(root) == ["vda", "vdb"]


def _libvirt_error(code: int) -> libvirt.libvirtError:
    err = libvirt.libvirtError("synthetic")
    err.err = (code, 0, "synthetic", 0, "", None, None, 0, 0)
    return err


def _xml(listen: str) -> object:
    return xmlutil.parse(
        f"<domain><devices><graphics type='vnc' listen='{listen}'>"
        f"<listen type='address' address='{listen}'/></graphics>"
        "<disk type='file'><source file='/src/inst/disk'/><target dev='vda'/></disk>"
        "</devices></domain>")


def test_migrate_to_uri3_used_when_supported():
    dom = mock.Mock()
    params = {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h"}
    assert migrate.start_migration(dom, "qemu+tcp://h/system", params, BASE,
                                   _xml("198.18.1.2")) == "migrateToURI3"
    dom.migrateToURI3.assert_called_once_with("qemu+tcp://h/system", params, BASE)
    dom.migrateToURI.assert_not_called()


def test_legacy_fallback_on_config_unsupported_with_portable_xml():
    dom = mock.Mock()
    dom.migrateToURI3.side_effect = _libvirt_error(libvirt.VIR_ERR_CONFIG_UNSUPPORTED)
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 8}
    call = migrate.start_migration(dom, "qemu+tcp://h/system", params, BASE, _xml("0.0.0.0"))
    assert call == "migrateToURI"
    dom.migrateToURI.assert_called_once_with("qemu+tcp://h/system", BASE, None, 8)


def test_legacy_fallback_refused_for_source_listen_address():
    dom = mock.Mock()
    dom.migrateToURI3.side_effect = _libvirt_error(libvirt.VIR_ERR_CONFIG_UNSUPPORTED)
    with pytest.raises(ListenAddressError, match="198.18.1.2"):
        migrate.start_migration(dom, "qemu+tcp://h/system", {}, BASE, _xml("198.18.1.2"))
    dom.migrateToURI.assert_not_called()


def test_legacy_fallback_refused_when_paths_differ_on_destination():
    dom = mock.Mock()
    dom.migrateToURI3.side_effect = _libvirt_error(libvirt.VIR_ERR_CONFIG_UNSUPPORTED)
    with pytest.raises(MigrationError, match="/src/inst/disk"):
        migrate.start_migration(dom, "u", {}, BASE, _xml("0.0.0.0"), ["/src/inst"])
    dom.migrateToURI.assert_not_called()


def test_other_libvirt_errors_propagate_without_fallback():
    dom = mock.Mock()
    dom.migrateToURI3.side_effect = _libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED)
    with pytest.raises(libvirt.libvirtError):
        migrate.start_migration(dom, "u", {}, BASE, _xml("0.0.0.0"))
    dom.migrateToURI.assert_not_called()


def test_job_stats_translation():
    raw = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": 1500,
           "data_total": 400, "data_processed": 100, "data_remaining": 300,
           "memory_total": 400, "memory_processed": 100, "memory_remaining": 300,
           "memory_bps": 4194304, "memory_dirty_rate": 2048, "memory_iteration": 2,
           "disk_total": 0, "downtime": 0, "setup_time": 3}
    stats = job_stats_from_libvirt(raw)
    assert stats.job_type == "unbounded"
    assert (stats.time_elapsed_ms, stats.data_remaining, stats.memory_iteration) == (1500, 300, 2)
    assert stats.memory_bps == 4194304 and stats.setup_time_ms == 3
    assert stats.progress == 25.0
    done = job_stats_from_libvirt({"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 42})
    assert (done.job_type, done.downtime_ms) == ("completed", 42)
