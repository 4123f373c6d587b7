"""Hostile hostnames and paths are refused before they reach a URI, command or file."""

from __future__ import annotations

import os

import pytest

from virtsdk.exceptions import InvalidHostname, UnsafePath
from virtsdk.validation import confine_path, validate_hostname


@pytest.mark.parametrize("name", [
    "host-a", "compute1.example.org", "198.18.1.2", "::1", "a" * 63, "fqdn.example.",
])
def test_good_hostnames(name):
    assert validate_hostname(name) == name


@pytest.mark.parametrize("name", [
    "", " ", "host a", "evil/system?x=1", "user@host", "host;rm -rf /", "$(reboot)",
    "host:16509", "-leading", "trailing-", "a" * 64, "x" * 254, "tab\thost", "new\nline",
    "qemu+ssh://h/system", "..", "host..double",
])
def test_hostile_hostnames(name):
    with pytest.raises(InvalidHostname) as err:
        validate_hostname(name)
    assert repr(name) in str(err.value)


def test_confined_path_resolves_under_root(tmp_path):
    assert confine_path(tmp_path, "abc/disk") == tmp_path / "abc" / "disk"


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\x00b"])
def test_traversal_is_refused(tmp_path, rel):
    with pytest.raises(UnsafePath):
        confine_path(tmp_path / "instances", rel)


def test_symlink_escape_is_refused(tmp_path):
    root = tmp_path / "instances"
    root.mkdir()
    os.symlink("/etc", root / "evil")
    with pytest.raises(UnsafePath):
        confine_path(root, "evil/passwd")
    os.symlink(root / "ok-target", root / "inside")
    assert confine_path(root, "inside").parent == root
