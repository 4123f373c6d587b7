"""Versioned-ish notifications the orchestration layer emits (``resize.start`` ...).

Called by the compute manager and the conductor on the host doing the work.  They go
out through oslo.messaging's Notifier (:func:`virtsdk.rpc.get_notifier`), so any
listener on the notification topic (``[oslo_messaging_notifications] topics``) sees
them, in-process or across a broker.  A failure to notify is logged, never raised:
bookkeeping must not break a migration.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.objects import Instance

LOG = logging.getLogger(__name__)


def instance_payload(instance: Instance, **extra: Any) -> dict[str, Any]:
    """The common payload: who the instance is, where and in which state."""
    payload: dict[str, Any] = {
        "instance_uuid": instance.uuid,
        "display_name": instance.name,
        "host": instance.host,
        "vm_state": str(instance.vm_state),
        "task_state": None if instance.task_state is None else str(instance.task_state),
        "flavor": instance.flavor.name,
    }
    payload.update(extra)
    return payload


class Notifier:
    """Emits notifications as ``<service>.<host>`` (e.g. ``compute.host1``)."""

    def __init__(self, conf: cfg.ConfigOpts, service: str, host: str) -> None:
        self.publisher_id = f"{service}.{host}"
        self._notifier = rpc.get_notifier(conf, self.publisher_id)

    def info(self, ctx: RequestContext, event_type: str, payload: dict[str, Any]) -> None:
        try:
            self._notifier.info(ctx, event_type, payload)
        except Exception:  # see the module docstring
            LOG.exception("could not emit notification %s", event_type)

    def error(self, ctx: RequestContext, event_type: str, payload: dict[str, Any]) -> None:
        try:
            self._notifier.error(ctx, event_type, payload)
        except Exception:
            LOG.exception("could not emit notification %s", event_type)

    @contextlib.contextmanager
    def around(
        self, ctx: RequestContext, prefix: str, payload: dict[str, Any]
    ) -> Iterator[None]:
        """``<prefix>.start`` now, then ``<prefix>.end`` or ``<prefix>.error`` (with
        the exception) when the block ends; re-raises."""
        self.info(ctx, f"{prefix}.start", payload)
        try:
            yield
        except Exception as exc:
            self.error(ctx, f"{prefix}.error",
                       {**payload, "exception": f"{type(exc).__name__}: {exc}"})
            raise
        self.info(ctx, f"{prefix}.end", payload)
