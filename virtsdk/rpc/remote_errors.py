"""Errors that cross an RPC call: short and typed for the caller, traceback in the log.

oslo.messaging sends an error raised by an endpoint as its class, module, message,
constructor arguments and the server's formatted traceback, and the caller's
re-raised copy prints that traceback as part of ``str(error)`` (tens of lines with
the serving host's file paths).  Every RPC server made by :func:`virtsdk.rpc.get_server`
dispatches through :class:`ErrorReportingDispatcher` instead, which, for any error an
endpoint raises:

* logs the full traceback on the serving host (logger ``virtsdk.rpc.remote_errors``)
  with the request id, topic, server and method;
* stamps the request id on the error (``error.request_id``; a
  :class:`~virtsdk.exceptions.VirtSDKError` carries it across the call and the caller
  gets it back as the same attribute; any other error, which oslo.messaging rebuilds
  from its text, gets it as a note, so it appears in the caller's message);
* hands oslo.messaging the error without its traceback and without its chained
  causes, so what travels is the class, the message and the error's own fields.

A caller's ``str(error)`` is then the error's own message; the operator finds the
traceback by grepping the serving service's log for ``error.request_id``.  This works
the same on every oslo.messaging driver, because it only uses the dispatcher and
``oslo_messaging.ExpectedException`` (whose ``exc_info`` the RPC server replies with)
and leaves the wire format alone.  The caller's side is
:meth:`virtsdk.exceptions.VirtSDKError.__init_subclass__`.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import oslo_messaging

from virtsdk.exceptions import REMOTE_SUFFIX, VirtSDKError

LOG = logging.getLogger(__name__)

#: A request id taken from an incoming context must look like one (it goes into log
#: lines and error fields): otherwise the error gets a fresh id.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


class ReportedError(oslo_messaging.ExpectedException):
    """What the dispatcher raises to the RPC server for an endpoint's error: the server
    replies with :attr:`exc_info`, whose traceback is None (already logged here)."""

    def __init__(self, error: BaseException) -> None:
        Exception.__init__(self, f"{type(error).__name__}: {error}")
        self.exc_info = (type(error), error, None)


class ErrorReportingDispatcher(oslo_messaging.RPCDispatcher):
    """oslo.messaging's RPC dispatcher whose endpoint errors go out as described in
    the module docstring.  ``where`` names the server in log lines
    (``"compute on host1"``)."""

    def __init__(self, endpoints: list[object], serializer: oslo_messaging.Serializer,
                 where: str) -> None:
        super().__init__(endpoints, serializer)
        self._where = where

    def dispatch(self, incoming: Any) -> Any:
        """Called by the RPC server on its executor thread for each request."""
        try:
            return super().dispatch(incoming)
        except oslo_messaging.ExpectedException as expected:
            error = expected.exc_info[1]
            tb = expected.exc_info[2]
        except Exception as exc:  # noqa: BLE001 - every endpoint error is reported
            error, tb = exc, exc.__traceback__
        method = str(incoming.message.get("method", "?"))
        request_id = self._request_id(incoming.ctxt, error)
        raise ReportedError(report(error, tb, request_id, f"{self._where}: {method}"))

    def _request_id(self, ctxt: Any, error: BaseException) -> str:
        carried = getattr(error, "request_id", None)
        if isinstance(carried, str) and _REQUEST_ID.fullmatch(carried):
            return carried  # raised by a further hop, which logged it under this id
        try:
            candidate = getattr(self.serializer.deserialize_context(ctxt), "request_id", None)
        except Exception:  # noqa: BLE001 - a context we cannot read still gets an id
            candidate = None
        if isinstance(candidate, str) and _REQUEST_ID.fullmatch(candidate):
            return candidate
        return new_request_id()


def report(error: BaseException, tb: Any, request_id: str, where: str) -> BaseException:
    """Log ``error`` with its traceback under ``request_id``, then return it stamped
    with the id and stripped of traceback and chained causes (ready to be sent)."""
    level = logging.WARNING if isinstance(error, VirtSDKError) else logging.ERROR
    # Handlers format the record (and cache its traceback text) while LOG.log runs,
    # before the traceback and causes are dropped below.
    LOG.log(level, "[%s] %s raised %s: %s", request_id, where,
            type(error).__name__.removesuffix(REMOTE_SUFFIX), error,
            exc_info=(type(error), error, tb))
    try:
        error.request_id = request_id  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - an exception type with __slots__
        pass
    if not isinstance(error, VirtSDKError):
        # A builtin error is rebuilt from its message alone and any other class
        # arrives as oslo_messaging.RemoteError: neither keeps an attribute, but both
        # show the last line oslo formats, which ends with the exception's notes.
        note = f"request id: {request_id}"
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
    error.__traceback__ = None
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error
