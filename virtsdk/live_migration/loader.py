"""Build the convergence policies of one live migration (plugins of the entry-point
group ``virtsdk.convergence_policies``, loaded by :func:`virtsdk.plugins.load`).

Called by a driver's ``live_migration`` on the source host, once per migration (policies
keep per-migration state).  An unknown, broken or misconfigured policy raises a
:class:`~virtsdk.exceptions.PluginError` naming it before the migration starts.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.exceptions import PluginTypeError
from virtsdk.live_migration import opts
from virtsdk.live_migration.base import ConvergencePolicy
from virtsdk.plugins import CONVERGENCE_POLICIES, load


def _ensure_opts(conf: cfg.ConfigOpts) -> None:
    try:
        conf.live_migration  # noqa: B018 - probe for the group
    except cfg.NoSuchOptError:
        opts.register_opts(conf)


def load_policy(name: str, conf: cfg.ConfigOpts) -> ConvergencePolicy:
    """Build one policy from its entry point, configured from ``[live_migration]``
    (through the class's ``from_conf(conf)`` when it has one, else with no
    arguments).  A configuration the policy refuses is a PluginTypeError."""
    _ensure_opts(conf)
    cls = load(CONVERGENCE_POLICIES, name, ConvergencePolicy)
    try:
        from_conf = getattr(cls, "from_conf", None)
        return from_conf(conf) if from_conf is not None else cls()
    except (ValueError, TypeError, cfg.Error) as exc:
        raise PluginTypeError(CONVERGENCE_POLICIES, name, f"{cls.__module__}:{cls.__name__}",
                              f"cannot be built from [live_migration]: {exc}") from exc


def load_policies(names: list[str], conf: cfg.ConfigOpts) -> list[ConvergencePolicy]:
    """Build the policies ``names`` (in order, duplicates dropped) for one migration.

    Raises the :class:`~virtsdk.exceptions.PluginError` of the first policy that
    cannot be loaded or configured.
    """
    seen: list[str] = []
    for name in names:
        name = name.strip()
        if name and name not in seen:
            seen.append(name)
    return [load_policy(name, conf) for name in seen]


def configured_policy_names(conf: cfg.ConfigOpts) -> list[str]:
    """``[live_migration] policies`` plus ``postcopy`` when ``permit_post_copy`` and
    ``auto_converge`` when ``permit_auto_converge`` are set (``adaptive`` decides on
    post-copy itself: no ``postcopy`` policy beside it)."""
    _ensure_opts(conf)
    group = conf.live_migration
    names = list(group.policies)
    if group.permit_post_copy and "postcopy" not in names and "adaptive" not in names:
        names.append("postcopy")
    if group.permit_auto_converge and "auto_converge" not in names:
        names.append("auto_converge")
    return names


def load_configured_policies(conf: cfg.ConfigOpts) -> list[ConvergencePolicy]:
    """The policies configuration asks for (see :func:`configured_policy_names`)."""
    return load_policies(configured_policy_names(conf), conf)
