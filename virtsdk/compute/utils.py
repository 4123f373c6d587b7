"""Helpers every compute flow uses: action events, error handling, network info.

Called by the compute manager (and the conductor) on the host doing the work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
import uuid as uuidlib
from collections.abc import Iterator

from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.exceptions import InstanceNotFound, NotSupported, RollbackError
from virtsdk.objects import VIF, Instance, NetworkInfo
from virtsdk.states import VMState

LOG = logging.getLogger(__name__)

#: Errors after which the previous vm_state is restored instead of ERROR.
ROLLBACK_ERRORS: tuple[type[BaseException], ...] = (NotSupported, RollbackError,
                                                    NotImplementedError)


@contextlib.contextmanager
def event_reporter(
    db: Database, ctx: RequestContext, instance_uuid: str, event: str, host: str
) -> Iterator[None]:
    """Record an instance-action event: its start now, then its finish with result
    ``Success`` or ``Error`` (and the traceback).  Re-raises what the block raised."""
    db.action_event_start(ctx, instance_uuid, event, host)
    try:
        yield
    except BaseException:
        db.action_event_finish(ctx, instance_uuid, event, "Error", traceback.format_exc())
        raise
    db.action_event_finish(ctx, instance_uuid, event, "Success")


def error_out_instance(
    db: Database, instance_uuid: str, exc: BaseException, restore_vm_state: VMState,
    rollback: bool = False,
) -> Instance | None:
    """Nova's "error out instance on exception": after a rollback-class error restore
    ``restore_vm_state``; after anything else set vm_state ERROR.  Either way the
    task state is cleared and nothing about where the data lives is changed.
    ``rollback=True`` restores whatever the error (nothing was touched)."""
    rolled_back = rollback or isinstance(exc, ROLLBACK_ERRORS)
    vm_state = restore_vm_state if rolled_back else VMState.ERROR
    try:
        return db.instance_update(instance_uuid, {"vm_state": vm_state, "task_state": None})
    except InstanceNotFound:
        return None


def finish_action(db: Database, ctx: RequestContext, instance_uuid: str,
                  message: str = "") -> None:
    """Close the instance action of this request (tolerates a deleted instance)."""
    try:
        db.action_finish(ctx, instance_uuid, message)
    except Exception:  # noqa: BLE001 - bookkeeping must not hide the real outcome
        LOG.exception("could not finish action of %s", instance_uuid)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def new_network_info() -> NetworkInfo:
    """One VIF with a fresh locally-administered MAC, for a new instance."""
    raw = uuidlib.uuid4().bytes
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in raw[:3])
    return NetworkInfo(vifs=[VIF(id=str(uuidlib.uuid4()), address=mac, network="private")])


def network_info(instance: Instance) -> NetworkInfo:
    """The instance's network info, kept in ``system_metadata['network_info']``."""
    raw = instance.system_metadata.get("network_info")
    if not raw:
        return NetworkInfo()
    return NetworkInfo.from_primitive(json.loads(raw))


def network_info_metadata(info: NetworkInfo) -> str:
    return json.dumps(info.to_primitive())
