"""An instance's network info: made when it is created, kept in its system metadata.

Who calls it: the API (a new instance gets one VIF) and the compute manager (passes
the instance's network info to the driver in every flow).
"""

from __future__ import annotations

import json
import uuid as uuidlib

from virtsdk.objects import VIF, Instance, NetworkInfo


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
    """``info`` as kept in ``system_metadata['network_info']``."""
    return json.dumps(info.to_primitive())
