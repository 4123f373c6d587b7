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

    def redacted_copy(self) -> RequestContext:
        """A copy safe to publish in notifications (oslo.messaging's Notifier calls
        this; the context carries no secrets, so it is a plain copy)."""
        return self.copy()


def get_admin_context() -> RequestContext:
    return RequestContext()
