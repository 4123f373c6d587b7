"""Instance actions and their events, and how a failed request leaves an instance.

Who calls it: the API (closing the action of a request it refused or that failed
on the way), the conductor and the compute manager (recording each step of a flow
as an action event, and erroring out or restoring an instance when a flow fails).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator

from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.exceptions import InstanceNotFound, NotSupported, RollbackError
from virtsdk.objects import Instance
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
    except Exception:  # bookkeeping must not hide the real outcome
        LOG.exception("could not finish action of %s", instance_uuid)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an error, as action messages and logs show it."""
    return f"{type(exc).__name__}: {exc}"
