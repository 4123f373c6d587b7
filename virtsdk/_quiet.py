"""Hide third-party import-time deprecation notices in virtsdk's commands.

oslo.messaging imports eventlet and deprecated oslo modules; their notices are for
library maintainers, not for an operator.  The command packages
(:mod:`virtsdk.cli`, :mod:`virtsdk.service`) call :func:`quiet_import_warnings` on
import, before those libraries load.  ``python -W ...`` still shows them.
"""

from __future__ import annotations

import sys
import warnings


def quiet_import_warnings() -> None:
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
