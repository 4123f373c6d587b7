"""The oslo.messaging serializer that carries virtsdk objects and contexts over RPC.

Every RPC client and server made by :mod:`virtsdk.rpc` uses
:class:`VirtObjectSerializer`: on the sending host it turns arguments and return
values into JSON-safe primitives (:func:`virtsdk.objects.to_primitive`), and on the
receiving host it rebuilds them (:func:`virtsdk.objects.from_primitive`).  Anything that
cannot make that round trip raises :class:`TypeError` on the sender, before a message
leaves the process.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging

from virtsdk.context import RequestContext
from virtsdk.objects import from_primitive, to_primitive


class VirtObjectSerializer(oslo_messaging.Serializer):
    """Serialises :class:`~virtsdk.objects.VirtObject` entities and request contexts.

    Called by oslo.messaging itself: ``serialize_*`` on the side that sends (the
    client for arguments, the server for return values), ``deserialize_*`` on the side
    that receives.  Guarantees that what the receiver gets compares equal to what the
    sender passed (dataclass objects, enums by value, lists and dicts of those).
    """

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Return ``entity`` as JSON-safe primitives; raise :class:`TypeError` if it is not."""
        return to_primitive(entity)

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Rebuild the objects :meth:`serialize_entity` produced."""
        return from_primitive(entity)

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        """Turn a :class:`RequestContext` (or a plain dict, or ``None``) into a dict."""
        if ctxt is None:
            return {}
        if isinstance(ctxt, RequestContext):
            return ctxt.to_primitive()
        if isinstance(ctxt, dict):
            primitive: dict[str, Any] = to_primitive(ctxt)
            return primitive
        raise TypeError(
            f"RPC context must be a virtsdk.context.RequestContext or a dict, "
            f"not {type(ctxt).__name__}"
        )

    def deserialize_context(self, ctxt: Any) -> Any:
        """Rebuild the :class:`RequestContext` (a plain dict stays a dict)."""
        if not ctxt:
            return RequestContext()
        obj = from_primitive(ctxt)
        return obj
