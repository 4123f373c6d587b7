"""The request context passed through every layer (a small RequestContext)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from virtsdk.objects import VirtObject


@dataclass
class RequestContext(VirtObject):
    """Who asked, and the request id that ties logs, actions and events together."""

    request_id: str = field(default_factory=lambda: f"req-{uuid.uuid4()}")
    user_id: str = "admin"
    project_id: str = "admin"
    is_admin: bool = True


def get_admin_context() -> RequestContext:
    return RequestContext()
