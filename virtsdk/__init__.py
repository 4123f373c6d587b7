"""virtsdk: an SDK for hypervisor drivers that move virtual machines between hosts.

The core package never imports a driver.  Drivers are separate distributions that
register a :class:`virtsdk.driver.ComputeDriver` subclass in the entry-point group
``virtsdk.compute_drivers``; :mod:`virtsdk.plugins` finds and loads them (and every
other plugin group) by entry-point name.
"""

__version__ = "0.1.0"

import warnings as _warnings

# oslo.messaging still imports eventlet (through oslo.service and oslo.utils), which
# warns at import time that it is deprecated.  virtsdk never runs on eventlet; keep
# those third-party notices off every user's screen.  Our own warnings stay visible.
for _module in ("eventlet", "oslo_service", "oslo_utils", "debtcollector"):
    _warnings.filterwarnings("ignore", category=DeprecationWarning,
                             module=_module + r"(\..*)?$")
_warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
