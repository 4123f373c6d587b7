"""Load convergence policies by name through stevedore (group
``virtsdk.convergence_policies``).

Called by a driver's ``live_migration`` on the source host, once per migration (policies
keep per-migration state).  Unknown or broken policies raise
:class:`~virtsdk.exceptions.PolicyNotFound` / :class:`~virtsdk.exceptions.PolicyLoadError`
naming the policy and what is installed, before the migration starts.
"""

from __future__ import annotations

import importlib.metadata

from oslo_config import cfg
from stevedore import driver as sd_driver
from stevedore import extension as sd_extension
from stevedore.exception import NoMatches

from virtsdk.exceptions import PolicyLoadError, PolicyNotFound
from virtsdk.livemigration import opts
from virtsdk.livemigration.base import ConvergencePolicy

NAMESPACE = "virtsdk.convergence_policies"


def available_policies() -> list[str]:
    """Names of the installed convergence policies, sorted."""
    names = {ep.name for ep in importlib.metadata.entry_points(group=NAMESPACE)}
    return sorted(names)


def _ensure_opts(conf: cfg.ConfigOpts) -> None:
    try:
        conf.live_migration  # noqa: B018 - probe for the group
    except cfg.NoSuchOptError:
        opts.register_opts(conf)


def load_policy(name: str, conf: cfg.ConfigOpts) -> ConvergencePolicy:
    """Build one policy from its entry point, configured from ``[live_migration]``.

    A policy class with a ``from_conf(conf)`` classmethod is built through it, any
    other with no arguments.
    """
    _ensure_opts(conf)
    failure: list[BaseException] = []

    def on_failure(_mgr: object, _ep: object, err: BaseException) -> None:
        failure.append(err)

    # stevedore keeps a process-wide list per group; drop it so that policies
    # installed after the first load are seen (as virtsdk.loader does for drivers)
    sd_extension.ExtensionManager.ENTRY_POINT_CACHE.pop(NAMESPACE, None)
    try:
        mgr = sd_driver.DriverManager(NAMESPACE, name, invoke_on_load=False,
                                      on_load_failure_callback=on_failure)
    except NoMatches as exc:
        if failure:
            raise PolicyLoadError(name, failure[0]) from failure[0]
        raise PolicyNotFound(name, available_policies()) from exc
    cls = mgr.driver
    if not (isinstance(cls, type) and issubclass(cls, ConvergencePolicy)):
        raise PolicyLoadError(name, TypeError(f"{cls!r} is not a ConvergencePolicy"))
    try:
        from_conf = getattr(cls, "from_conf", None)
        return from_conf(conf) if from_conf is not None else cls()
    except (ValueError, TypeError, cfg.Error) as exc:
        raise PolicyLoadError(name, exc) from exc


def load_policies(names: list[str], conf: cfg.ConfigOpts) -> list[ConvergencePolicy]:
    """Build the policies ``names`` (in order, duplicates dropped) for one migration.

    Raises PolicyNotFound for an unknown name (listing the installed ones) and
    PolicyLoadError when a policy cannot be imported or configured.
    """
    seen: list[str] = []
    for name in names:
        name = name.strip()
        if name and name not in seen:
            seen.append(name)
    return [load_policy(name, conf) for name in seen]


def configured_policy_names(conf: cfg.ConfigOpts) -> list[str]:
    """``[live_migration] policies`` plus ``postcopy`` when ``permit_post_copy`` and
    ``auto_converge`` when ``permit_auto_converge`` are set."""
    _ensure_opts(conf)
    group = conf.live_migration
    names = list(group.policies)
    if group.permit_post_copy and "postcopy" not in names:
        names.append("postcopy")
    if group.permit_auto_converge and "auto_converge" not in names:
        names.append("auto_converge")
    return names


def load_configured_policies(conf: cfg.ConfigOpts) -> list[ConvergencePolicy]:
    """The policies configuration asks for (see :func:`configured_policy_names`)."""
    return load_policies(configured_policy_names(conf), conf)
