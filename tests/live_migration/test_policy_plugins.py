"""Third-party convergence policies found by entry point, and broken ones."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg

from virtsdk import plugins
from virtsdk.exceptions import PluginError
from virtsdk.live_migration.base import Action
from virtsdk.live_migration.loader import load_policies
from virtsdk.objects import JobStats

PLUGIN = '''
from virtsdk.live_migration.base import Action, ConvergencePolicy


class PauseAtThirdIteration(ConvergencePolicy):
    name = "pause_at_three"

    def decide(self, stats, elapsed_s):
        return [Action(Action.PAUSE)] if stats.memory_iteration >= 3 else []


NOT_A_POLICY = object()
'''


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[None]:
    """A distribution (module + dist-info) on sys.path declaring three policies."""
    (tmp_path / "throwaway_policies.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "throwaway_broken.py").write_text("raise ImportError('no such library')\n")
    info = tmp_path / "throwaway_policies-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-policies\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[virtsdk.convergence_policies]\n"
        "pause_at_three = throwaway_policies:PauseAtThirdIteration\n"
        "not_a_policy = throwaway_policies:NOT_A_POLICY\n"
        "broken = throwaway_broken:Whatever\n")
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    for name in ("throwaway_policies", "throwaway_broken"):
        sys.modules.pop(name, None)


def test_a_third_party_policy_is_loaded_and_used(plugin_dist):
    conf = cfg.ConfigOpts()
    installed = set(plugins.names(plugins.CONVERGENCE_POLICIES))
    assert {"pause_at_three", "broken", "not_a_policy"} <= installed
    (policy,) = load_policies(["pause_at_three"], conf)
    policy.start(1.0)
    assert policy.decide(JobStats(memory_iteration=2), 1.0) == []
    assert policy.decide(JobStats(memory_iteration=3), 2.0) == [Action(Action.PAUSE)]


@pytest.mark.parametrize(("name", "cause"), [
    ("broken", "failed to load: ImportError: no such library"),
    ("not_a_policy", "not a subclass of virtsdk.live_migration.base.ConvergencePolicy")])
def test_broken_policies_are_reported_by_name(plugin_dist, name, cause):
    with pytest.raises(PluginError) as info:
        load_policies(["linear_downtime", name], cfg.ConfigOpts())
    assert f"convergence policy {name!r}" in str(info.value)
    assert cause in str(info.value)
