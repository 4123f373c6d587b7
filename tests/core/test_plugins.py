"""Plugin discovery (virtsdk.plugins): the same three errors for every entry-point
group, reached through each group's own way of loading; then what drivers add
(listing, a third-party distribution, two distributions claiming one name)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from oslo_config import cfg

from virtsdk import plugins
from virtsdk.cli.main import build_parser
from virtsdk.cloud import make_conf
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    PluginConflict,
    PluginError,
    PluginLoadError,
    PluginNotFound,
    PluginTypeError,
)
from virtsdk.live_migration.loader import load_policies
from virtsdk.scheduler import load_scheduler
from virtsdk.transfer.base import load_transport


def _driver(name: str) -> object:
    return plugins.load(plugins.COMPUTE_DRIVERS, name, ComputeDriver)


def _policy(name: str) -> object:
    return load_policies([name], cfg.ConfigOpts())


def _transport(name: str) -> object:
    return load_transport(name, cfg.ConfigOpts())


def _scheduler(name: str) -> object:
    conf = make_conf()
    conf.set_override("driver", name, group="scheduler")
    return load_scheduler(conf, None)  # type: ignore[arg-type]  # never built


def _command(name: str) -> object:
    return plugins.load_function(plugins.CLI_COMMANDS, name)


#: group, how that group's users load a plugin by name, one name installed with virtsdk
GROUPS: list[tuple[str, Callable[[str], object], str]] = [
    (plugins.COMPUTE_DRIVERS, _driver, "fake"),
    (plugins.CONVERGENCE_POLICIES, _policy, "linear_downtime"),
    (plugins.DISK_TRANSPORTS, _transport, "local"),
    (plugins.SCHEDULERS, _scheduler, "filter_scheduler"),
    (plugins.CLI_COMMANDS, _command, "drivers"),
]
IDS = [g for g, _, _ in GROUPS]


@pytest.fixture
def bad_plugins(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Install (a module + dist-info on sys.path) a distribution whose entry points
    in one group are ``broken`` (fails to import) and ``notaplugin`` (an object)."""
    added: list[str] = []

    def install(group: str) -> None:
        site = tmp_path / group.replace(".", "_")
        site.mkdir()
        (site / "throwaway_bad.py").write_text("NOT_A_PLUGIN = object()\n")
        (site / "throwaway_broken.py").write_text("import no_such_library_anywhere\n")
        info = site / "throwaway_bad-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: throwaway-bad\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(f"""\
            [{group}]
            broken = throwaway_broken:Anything
            notaplugin = throwaway_bad:NOT_A_PLUGIN
            """))
        sys.path.insert(0, str(site))
        added.append(str(site))

    yield install
    for path in added:
        sys.path.remove(path)
    for name in ("throwaway_bad", "throwaway_broken"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("group", "load", "known"), GROUPS, ids=IDS)
def test_unknown_name_lists_what_is_installed(group, load, known):
    with pytest.raises(PluginNotFound) as err:
        load("warp-drive")
    msg = str(err.value)
    assert "'warp-drive'" in msg and group in msg and known in msg
    assert err.value.group == group and known in err.value.installed
    assert "Traceback" not in msg


#: a broken entry point, the error it gives and what the message must name
BROKEN = [
    ("broken", PluginLoadError,
     ["broken = throwaway_broken:Anything", "ModuleNotFoundError", "no_such_library_anywhere"]),
    ("notaplugin", PluginTypeError, ["notaplugin = throwaway_bad:NOT_A_PLUGIN", "is not"]),
]


@pytest.mark.parametrize(("name", "error", "named"), BROKEN, ids=["import", "type"])
@pytest.mark.parametrize(("group", "load", "known"), GROUPS, ids=IDS)
def test_a_broken_entry_point_is_named_with_its_cause(bad_plugins, group, load, known, name,
                                                      error, named):
    bad_plugins(group)
    with pytest.raises(error) as err:
        load(name)
    msg = str(err.value)
    assert group in msg and all(part in msg for part in named), msg


@pytest.mark.parametrize("name", ["warp-drive", "broken", "notaplugin"])
@pytest.mark.parametrize(("group", "load", "known"), GROUPS, ids=IDS)
def test_every_error_is_one_family_that_crosses_rpc(bad_plugins, group, load, known, name):
    bad_plugins(group)
    with pytest.raises(PluginError) as err:
        load(name)
    again = type(err.value)(**err.value.kwargs)
    assert type(again) is type(err.value) and str(again) == str(err.value)


def test_broken_commands_do_not_break_the_cli(bad_plugins, capsys):
    bad_plugins(plugins.CLI_COMMANDS)
    parser = build_parser()
    assert parser.parse_args(["drivers", "list"]).command == "drivers"
    err = capsys.readouterr().err
    assert "command 'broken'" in err and "command 'notaplugin'" in err


# -- compute drivers ---------------------------------------------------------------------


def test_installed_drivers_are_listed():
    infos = {i.name: i for i in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver)}
    assert {"fake", "libvirt"} <= set(infos)
    assert infos["fake"].distribution == "virtsdk-fake"
    assert infos["libvirt"].distribution == "virtsdk-libvirt"
    assert infos["fake"].available, infos["fake"].error


def test_a_built_driver_has_its_option_group():
    conf = cfg.ConfigOpts()
    conf([])
    driver = plugins.load(plugins.COMPUTE_DRIVERS, "fake", ComputeDriver)(conf, "host-a")
    assert driver.host == "host-a" and driver.name == "fake"
    assert conf.fake.host_vcpus > 0


def test_driver_from_a_separate_distribution_is_found_and_loaded(installed_distribution):
    installed_distribution(
        "throwaway-driver", "throwaway_driver",
        {"throwaway": "throwaway_driver:ThrowAwayDriver"},
    )
    infos = {i.name: i for i in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver)}
    info = infos["throwaway"]
    assert info.available, info.error
    assert (info.distribution, info.version) == ("throwaway-driver", "9.9.9")
    assert info.plugin is not None and info.plugin.capabilities.supports_cold_migration

    conf = cfg.ConfigOpts()
    conf([])
    driver = plugins.load(plugins.COMPUTE_DRIVERS, "throwaway", ComputeDriver)(conf, "h1")
    assert type(driver).__module__ == "throwaway_driver"
    assert conf.throwaway.answer == 42  # its own option group was registered
    assert driver.get_available_resource().hostname == "h1"


def test_a_class_is_called_by_its_entry_point_name_and_never_changed(installed_distribution):
    installed_distribution(
        "throwaway-alias", "throwaway_alias", {"alias": "throwaway_alias:ThrowAwayDriver",
                                               "other": "throwaway_alias:ThrowAwayDriver"})
    alias = plugins.load(plugins.COMPUTE_DRIVERS, "alias", ComputeDriver)
    assert alias.name == "alias" and alias.option_group() == "alias"
    assert alias is plugins.load(plugins.COMPUTE_DRIVERS, "alias", ComputeDriver)
    other = plugins.load(plugins.COMPUTE_DRIVERS, "other", ComputeDriver)
    assert other.name == "other" and other.__mro__[1] is alias.__mro__[1]
    original = alias.__mro__[1]
    assert original.__name__ == alias.__name__ == "ThrowAwayDriver"
    assert original.name == ""  # the loaded class itself was not touched


def test_broken_drivers_are_listed_not_raised(installed_distribution):
    installed_distribution(
        "throwaway-broken", "throwaway_broken",
        {"broken": "throwaway_broken:ThrowAwayDriver"},
        body="import libvirt_but_not_installed  # noqa\n",
    )
    infos = {i.name: i for i in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver)}
    assert not infos["broken"].available
    assert "libvirt_but_not_installed" in infos["broken"].error
    assert infos["fake"].available


def test_two_distributions_claiming_one_name(installed_distribution):
    installed_distribution(
        "throwaway-impostor", "throwaway_impostor",
        {"fake": "throwaway_impostor:ThrowAwayDriver"},
    )
    with pytest.raises(PluginConflict) as err:
        plugins.load(plugins.COMPUTE_DRIVERS, "fake", ComputeDriver)
    assert "throwaway-impostor" in str(err.value) and "virtsdk-fake" in str(err.value)
    infos = {i.name: i for i in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver)}
    assert not infos["fake"].available
    assert "more than one distribution" in infos["fake"].error

