"""Driver discovery through stevedore entry points, and every error it can give."""

from __future__ import annotations

import pytest
from oslo_config import cfg

from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    DriverConflict,
    DriverLoadError,
    DriverNotFound,
    DriverTypeError,
)
from virtsdk.loader import list_drivers, load_driver, load_driver_class


def test_installed_drivers_are_listed():
    names = {e.name: e for e in list_drivers()}
    assert {"fake", "libvirt"} <= set(names)
    assert names["fake"].distribution == "virtsdk-fake"
    assert names["libvirt"].distribution == "virtsdk-libvirt"
    assert names["fake"].available, names["fake"].error


def test_load_builds_a_driver_for_a_host_with_its_option_group():
    conf = cfg.ConfigOpts()
    conf([])
    driver = load_driver("fake", conf, "host-a")
    assert isinstance(driver, ComputeDriver)
    assert driver.host == "host-a"
    assert driver.name == "fake"


def test_unknown_name_says_which_are_installed():
    with pytest.raises(DriverNotFound) as err:
        load_driver_class("no-such-driver")
    assert "no-such-driver" in str(err.value)
    assert "fake" in str(err.value) and "libvirt" in str(err.value)


def test_driver_from_a_separate_distribution_is_found_and_loaded(installed_distribution):
    installed_distribution(
        "throwaway-driver", "throwaway_driver",
        {"throwaway": "throwaway_driver:ThrowAwayDriver"},
    )
    entries = {e.name: e for e in list_drivers()}
    assert entries["throwaway"].available, entries["throwaway"].error
    assert entries["throwaway"].distribution == "throwaway-driver"
    assert entries["throwaway"].version == "9.9.9"
    assert entries["throwaway"].capabilities["supports_cold_migration"] is True

    conf = cfg.ConfigOpts()
    conf([])
    driver = load_driver("throwaway", conf, "h1")
    assert type(driver).__module__ == "throwaway_driver"
    assert conf.throwaway.answer == 42  # its own option group was registered
    assert driver.get_available_resource().hostname == "h1"


def test_entry_point_that_fails_to_import_is_named_with_its_cause(installed_distribution):
    installed_distribution(
        "throwaway-broken", "throwaway_broken",
        {"broken": "throwaway_broken:ThrowAwayDriver"},
        body="import libvirt_but_not_installed  # noqa\n",
    )
    with pytest.raises(DriverLoadError) as err:
        load_driver_class("broken")
    msg = str(err.value)
    assert "'broken'" in msg and "throwaway_broken:ThrowAwayDriver" in msg
    assert "libvirt_but_not_installed" in msg

    # listing does not crash: the broken driver is shown as unavailable, with the reason
    entries = {e.name: e for e in list_drivers()}
    assert not entries["broken"].available
    assert "libvirt_but_not_installed" in entries["broken"].error
    assert entries["fake"].available


def test_entry_point_that_is_not_a_compute_driver(installed_distribution):
    installed_distribution(
        "throwaway-notdriver", "throwaway_notdriver",
        {"notdriver": "throwaway_notdriver:not_a_driver"},
    )
    with pytest.raises(DriverTypeError) as err:
        load_driver_class("notdriver")
    assert "not a subclass of virtsdk.driver.ComputeDriver" in str(err.value)
    entries = {e.name: e for e in list_drivers()}
    assert not entries["notdriver"].available


def test_two_distributions_claiming_one_name(installed_distribution):
    installed_distribution(
        "throwaway-impostor", "throwaway_impostor",
        {"fake": "throwaway_impostor:ThrowAwayDriver"},
    )
    with pytest.raises(DriverConflict) as err:
        load_driver_class("fake")
    assert "throwaway-impostor" in str(err.value) and "virtsdk-fake" in str(err.value)
    entries = {e.name: e for e in list_drivers()}
    assert not entries["fake"].available
    assert "more than one distribution" in entries["fake"].error
