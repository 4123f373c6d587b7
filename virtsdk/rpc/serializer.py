"""The oslo.messaging serializer that carries virtsdk objects and contexts over RPC.

Every RPC client and server made by :mod:`virtsdk.rpc` uses
:class:`VirtObjectSerializer`: on the sending host it turns arguments and return
values into JSON-safe primitives (:func:`virtsdk.objects.to_primitive`), and on the
receiving host it rebuilds them (:func:`virtsdk.objects.from_primitive`).  Anything that
cannot make that round trip raises :class:`TypeError` on the sender, before a message
leaves the process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import oslo_messaging

from virtsdk.context import RequestContext
from virtsdk.objects import Manifest, from_primitive, to_primitive


class VirtObjectSerializer(oslo_messaging.Serializer):
    """Serialises :class:`~virtsdk.objects.VirtObject` entities and request contexts.

    Called by oslo.messaging itself: ``serialize_*`` on the side that sends (the
    client for arguments, the server for return values), ``deserialize_*`` on the side
    that receives.  Guarantees that what the receiver gets compares equal to what the
    sender passed (dataclass objects, enums by value, lists and dicts of those).
    """

    def __init__(self, manifest: Manifest | None = None) -> None:
        #: object versions the receiving side understands (from an RPC version cap):
        #: objects are backported to them before they leave
        self.manifest = dict(manifest or {})

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Return ``entity`` as JSON-safe primitives; raise :class:`TypeError` if it is not."""
        return to_primitive(entity, self.manifest)

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Rebuild the objects :meth:`serialize_entity` produced."""
        return from_primitive(entity)

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        """Turn a :class:`RequestContext` (or a plain dict, or ``None``) into a dict.

        A context becomes a flat dict of its fields (``request_id``, ``user_id``...),
        as oslo.messaging drivers expect: the AMQP driver sends each key as its own
        ``_context_<key>`` and adds keys of its own (``client_timeout``) on delivery.
        """
        if ctxt is None:
            return {}
        if isinstance(ctxt, RequestContext):
            flat: dict[str, Any] = to_primitive(
                {f.name: getattr(ctxt, f.name) for f in dataclasses.fields(ctxt)})
            return flat
        if isinstance(ctxt, dict):
            primitive: dict[str, Any] = to_primitive(ctxt)
            return primitive
        raise TypeError(
            f"RPC context must be a virtsdk.context.RequestContext or a dict, "
            f"not {type(ctxt).__name__}"
        )

    def deserialize_context(self, ctxt: Any) -> Any:
        """Rebuild the :class:`RequestContext` from what the transport delivered.

        A dict with a ``request_id`` is a context: its known fields are kept and keys a
        driver added (``client_timeout``, ``reply_q``...) or a newer peer sent are
        dropped.  Any other dict stays a dict; nothing becomes an empty context.
        """
        if not ctxt:
            return RequestContext()
        if isinstance(ctxt, dict) and "request_id" in ctxt:
            names = {f.name for f in dataclasses.fields(RequestContext)}
            return RequestContext(**{k: v for k, v in ctxt.items() if k in names})
        return from_primitive(ctxt)
