"""Fixtures that build throw-away driver distributions and put them on sys.path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DRIVER_SOURCE = '''
from virtsdk.driver import Capabilities, ComputeDriver
from virtsdk.objects import HostResources, InstanceInfo
from virtsdk.states import PowerState
from oslo_config import cfg


class ThrowAwayDriver(ComputeDriver):
    """A driver from a separate distribution, used by the discovery tests."""

    capabilities = Capabilities(supports_cold_migration=True)

    @classmethod
    def list_opts(cls):
        return [cfg.IntOpt("answer", default=42, help="a throw-away option")]

    def spawn(self, context, instance, image_meta, network_info, power_on=True):
        pass

    def destroy(self, context, instance, network_info, destroy_disks=True):
        pass

    def power_off(self, instance, timeout=0, retry_interval=0):
        pass

    def power_on(self, context, instance, network_info):
        pass

    def get_info(self, instance):
        return InstanceInfo(state=PowerState.RUNNING)

    def list_instances(self):
        return []

    def get_available_resource(self, nodename=None):
        return HostResources(hostname=self.host, vcpus=1, memory_mb=1, local_gb=1)


def not_a_driver():
    return "I am a function"
'''


def build_distribution(
    workdir: Path, dist_name: str, module: str, entry_points: dict[str, str],
    body: str = DRIVER_SOURCE,
) -> Path:
    """Write a distribution (setup.cfg + module) and pip-install it into its own
    target directory; return that directory (to be put on sys.path)."""
    src = workdir / f"src-{dist_name}"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(textwrap.dedent(body))
    eps = "\n".join(f"    {name} = {target}" for name, target in entry_points.items())
    (src / "setup.cfg").write_text(
        f"[metadata]\nname = {dist_name}\nversion = 9.9.9\n\n"
        f"[options]\npackages = {module}\n\n"
        f"[options.entry_points]\nvirtsdk.compute_drivers =\n{eps}\n"
    )
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    target = workdir / f"site-{dist_name}"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


@pytest.fixture
def installed_distribution(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Install throw-away distributions for one test, then take them off sys.path."""
    added: list[str] = []

    def install(dist_name: str, module: str, entry_points: dict[str, str],
                body: str = DRIVER_SOURCE) -> Path:
        target = build_distribution(tmp_path, dist_name, module, entry_points, body)
        sys.path.insert(0, str(target))
        added.append(str(target))
        return target

    yield install
    for path in added:
        sys.path.remove(path)
    for name in list(sys.modules):
        if name.startswith("throwaway_"):
            del sys.modules[name]
