"""The names of virtsdk's services (the ``binary`` of their database records).

Who uses them: each service when it registers and heartbeats, and whoever looks
services up (the API lists compute hosts, the scheduler reads their capacity), so
no layer imports another layer's manager to learn a name.
"""

from __future__ import annotations

from typing import Final

#: A compute host's service (one per host, RPC topic ``compute``).
COMPUTE: Final = "virtsdk-compute"

#: The conductor (with the scheduler inside; RPC topic ``conductor``).
CONDUCTOR: Final = "virtsdk-conductor"
