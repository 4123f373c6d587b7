"""Old home of the helpers now in :mod:`virtsdk.actions` and :mod:`virtsdk.network`.

Kept only so that code written against it keeps working while it is updated; new
code imports :mod:`virtsdk.actions` (action events, error-out) and
:mod:`virtsdk.network` (an instance's network info).  Remove once nothing imports it.
"""

from __future__ import annotations

from virtsdk.actions import (
    ROLLBACK_ERRORS,
    describe,
    error_out_instance,
    event_reporter,
    finish_action,
)
from virtsdk.network import network_info, network_info_metadata, new_network_info

__all__ = ["ROLLBACK_ERRORS", "describe", "error_out_instance", "event_reporter",
           "finish_action", "network_info", "network_info_metadata", "new_network_info"]
