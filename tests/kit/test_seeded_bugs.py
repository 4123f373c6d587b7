"""The conformance kit catches each kind of one-line driver bug, with a clear message.

Each case seeds one bug into a fake-driver subclass (:mod:`tests.kit.seeded`), runs the
kit against it in a child pytest run (the kit's own pytest11 plugin loaded as any
driver repository would load it), and asserts that the run fails and that the failure
message names what was observed.  The unmodified fake driver passes the same run.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest
import virtsdk_fake

import virtsdk
from tests.kit import seeded  # noqa: F401 - loaded once here, see _preload

pytest_plugins = ["pytester"]


def _preload(*packages: ModuleType) -> None:
    """Import every module of ``packages`` before any child run.  An in-process child
    run drops the modules it imported first when it ends; the next run would import
    fresh copies whose classes differ from those the surviving modules hold (a policy
    "is not a subclass of ConvergencePolicy", an object the serializer "cannot
    serialise").  Loaded up front, every run shares one copy."""
    for package in packages:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" not in info.name:  # Alembic scripts run only under Alembic
                importlib.import_module(info.name)


_preload(virtsdk, virtsdk_fake)

TEST_FILE = '''
import pytest
from tests.kit import seeded
from virtsdk.testing import DriverConformance


class TestSeeded(DriverConformance):
    @pytest.fixture
    def driver_factory(self):
        return seeded.factory(seeded.{cls})
'''

#: bug class -> (kit test that must fail, text its failure message must contain)
CASES = {
    "LeavesSourceRunning": ("test_cold_migration_moves_the_data",
                            "after migrate_disk_and_power_off: the guest should run on "
                            "no host but runs on ['contract-src']"),
    "BlankDiskOnFinish": ("test_cold_migration_moves_the_data",
                          "after cold migration: the disk on 'contract-dst' lost its data"),
    "ListOmitsStopped": ("test_stopped_guest_is_listed",
                         "a stopped instance is missing from list_instances()"),
    "ConfirmKeepsSourceCopy": ("test_cold_migration_moves_the_data",
                               "after confirm_migration: host 'contract-src' still holds "
                               "['kept cold-migration copy']"),
    "LiveRaisesNotImplemented": ("test_live_migration_moves_the_guest",
                                 "claims supports_live_migration but "
                                 "check_can_live_migrate_destination() raised "
                                 "NotImplementedError"),
    "FinishIgnoresPowerOn": ("test_finish_migration_honours_power_on_false",
                             "finish_migration(power_on=False) left the guest RUNNING"),
    "SpawnIgnoresPowerOn": ("test_spawn_power_on_false",
                            "spawn(power_on=False) left the guest RUNNING"),
    "DestroyIgnoresDestroyDisks": ("test_destroy_keeps_disks_when_asked",
                                   "destroy(destroy_disks=False) removed the disks too"),
    "LiveLeavesSourcePaused": ("test_live_migration_moves_the_guest",
                               "after live migration: a paused copy of the guest is left "
                               "on ['contract-src']"),
    "LiveCallsBothCallbacks": ("test_live_migration_moves_the_guest",
                               "it called ['post', 'recover']"),
    "LiveCallsNeitherCallback": ("test_live_migration_moves_the_guest",
                                 "it called neither"),
    "GetInfoLies": ("test_stopped_guest_is_listed",
                    "after power_off: get_info on 'contract-src' says RUNNING but the "
                    "hypervisor has the guest SHUTDOWN"),
    "ClaimsLiveWithoutMethods": ("test_claimed_features_are_implemented",
                                 "supports_live_migration is claimed but "
                                 "pre_live_migration, live_migration are not implemented"),
}


def _run(pytester: pytest.Pytester, cls: str, select: str) -> pytest.RunResult:
    pytester.makepyfile(test_seeded=TEST_FILE.format(cls=cls))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k", select,
                                        "-o", "addopts=", "--rootdir", str(pytester.path))


@pytest.mark.parametrize("cls", sorted(CASES))
def test_the_kit_catches_the_seeded_bug(pytester: pytest.Pytester, cls: str) -> None:
    select, message = CASES[cls]
    result = _run(pytester, cls, select)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, (
        f"the kit passed a driver with bug {cls}: {outcomes}\n{result.stdout.str()}")
    assert message in result.stdout.str(), (
        f"bug {cls}: the failure does not say {message!r}:\n{result.stdout.str()}")


def test_the_unmodified_fake_driver_passes_the_same_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(seeded_ok="")
    result = _run(pytester, "FakeDriver", "Seeded")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("passed", 0) >= 15, (
        result.stdout.str())
