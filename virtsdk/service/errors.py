"""How the commands print an error: its message, never a traceback.

An error raised again from an RPC reply may carry the remote traceback in its text
(oslo.messaging appends it to errors it does not rebuild); an operator gets the
message only, with the request id under which the serving service logged it.
"""

from __future__ import annotations

_TRACEBACK = "Traceback (most recent call last)"


def error_text(exc: BaseException) -> str:
    """The message, without a remote traceback; a virtsdk error that came from another
    service names its request id (its traceback is in that service's log under it)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):  # the driver's first line, not SQL and links
        return "database: " + (str(getattr(exc, "orig", None) or exc).splitlines()
                               or [type(exc).__name__])[0]
    text = str(exc)
    cut = text.find(_TRACEBACK)
    if cut >= 0:
        text = text[:cut]
    text = text.strip() or type(exc).__name__
    request_id = getattr(exc, "request_id", None)
    return f"{text} (request {request_id})" if request_id else text


def is_operator_error(exc: BaseException) -> bool:
    """Errors a command reports as one line (exit 1): virtsdk's own, configuration,
    messaging (broker unreachable, timeouts, remote failures) and database errors.
    Anything else is a bug and keeps its traceback."""
    import oslo_messaging
    from oslo_config import cfg
    from sqlalchemy.exc import SQLAlchemyError

    from virtsdk.exceptions import VirtSDKError

    return isinstance(exc, (VirtSDKError, cfg.Error, oslo_messaging.MessagingException,
                            SQLAlchemyError))
