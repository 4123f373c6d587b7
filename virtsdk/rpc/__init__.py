"""RPC and notifications for virtsdk services, through oslo.messaging only.

Every service (API, conductor, scheduler, compute) talks to the others with the
helpers here; none of them knows which transport carries the messages.  The default
``[DEFAULT] transport_url`` is ``inproc://`` (:mod:`virtsdk.rpc.inproc`, every service
in one process); ``rabbit://user:pass@host:5672/vhost`` moves the same code to RabbitMQ
with no other change.  One cloud per virtual host, or a ``[DEFAULT] rpc_topic_prefix``
of its own: every topic goes through :func:`prefixed_topic`.

Typical use, on any host::

    client = rpc.get_client(conf, "compute")
    client.prepare(server=dest_host).call(ctxt, "pre_live_migration", instance=inst)

    server = rpc.get_server(conf, "compute", conf.host, [ComputeManager(...)])
    server.start()    # ... server.stop(); server.wait()

Arguments and return values go through :class:`VirtObjectSerializer`; a
:mod:`virtsdk.exceptions` error raised by an endpoint is raised again, as the same
class, in the caller, with its own message and the ``request_id`` under which the
serving service logged the traceback (see :mod:`virtsdk.rpc.remote_errors`).
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import oslo_messaging
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from oslo_messaging.rpc.server import RPCServer

from virtsdk.context import RequestContext
from virtsdk.exceptions import BrokerUnreachable
from virtsdk.objects import Manifest
from virtsdk.rpc.delivery import Delivery
from virtsdk.rpc.remote_errors import ErrorReportingDispatcher
from virtsdk.rpc.serializer import VirtObjectSerializer

# oslo.messaging reads these groups on every call but registers them only on the
# global cfg.CONF (its own ConfFixture imports them the same way).
_CALL_PATH_OPTS = [
    ("oslo_messaging._metrics.client", "oslo_messaging_metrics", "oslo_messaging_metrics"),
    ("oslo_messaging._tracing.client", "oslo_messaging_tracing", "oslo_messaging_tracing"),
]

__all__ = [
    "DEFAULT_TRANSPORT_URL",
    "RPCAPIVersions",
    "VirtObjectSerializer",
    "allowed_remote_exmods",
    "check_broker",
    "cleanup",
    "drop_server",
    "get_client",
    "get_notification_transport",
    "get_notifier",
    "get_server",
    "get_transport",
    "notification_topics",
    "prefixed_topic",
    "stop_servers",
    "list_opts",
    "prompt_stop",
    "register_opts",
    "reliable",
]

DEFAULT_TRANSPORT_URL = "inproc://"
DEFAULT_EXCHANGE = "virtsdk"
#: notifications are off unless configured: on a broker, nothing would consume them
#: and they would pile up on ``notifications.info``
DEFAULT_NOTIFICATION_DRIVER: list[str] = []

_own_opts = [
    cfg.StrOpt(
        "rpc_topic_prefix", default="",
        help="Prefix of every RPC and notification topic of this cloud (e.g. "
             "'cloud1.').  Services of one cloud must all use the same prefix.  Two "
             "clouds that share a broker need their own virtual host in "
             "transport_url or different prefixes, or they take each other's "
             "messages."),
    cfg.FloatOpt(
        "rpc_delivery_window", default=60.0, min=0.0,
        help="Seconds during which the services send an RPC message again when the "
             "broker could not route it (its receiver has not declared its queue "
             "again yet, as after a broker restart) and, for idempotent calls (the "
             "live-migration post and rollback steps on the destination), when the "
             "request or its reply was lost (timeout, delivery failure).  0 sends "
             "once.  A message no queue took within the window raises "
             "MessageDeliveryFailure to the sender.  Not used on inproc://, which "
             "loses no message."),
    cfg.FloatOpt(
        "rpc_connect_timeout", default=15.0, min=0.1,
        help="Seconds a client that is not a service (the operator CLI, virtsdk demo, "
             "an embedded cloud starting on a broker) waits for the message broker "
             "before failing with BrokerUnreachable.  Services wait for the broker "
             "as long as it takes."),
]


class _AllowedExceptionModules(list[str]):
    """oslo.messaging's ``allowed_remote_exmods``, extended to whole package trees.

    oslo.messaging only asks ``module in allowed``; this answers yes for the listed
    modules and for any module of virtsdk itself or of a ``virtsdk_*`` distribution
    (the drivers), so a driver's ``VirtSDKError`` subclass reaches the caller as
    itself and the manager's rollback-or-ERROR decision still sees its class.  Other
    modules' errors arrive as ``oslo_messaging.RemoteError``.
    """

    PREFIXES = ("virtsdk.", "virtsdk_")

    def __contains__(self, module: object) -> bool:
        if super().__contains__(module):
            return True
        return isinstance(module, str) and module.startswith(self.PREFIXES)

_DEFAULT_OPT_NAMES = ("transport_url", "control_exchange", "rpc_response_timeout")
_NOTIFICATIONS_GROUP = "oslo_messaging_notifications"

_lock = threading.Lock()
_transports: dict[tuple[int, str], tuple[cfg.ConfigOpts, oslo_messaging.Transport]] = {}
_notification_transports: dict[
    tuple[int, str], tuple[cfg.ConfigOpts, oslo_messaging.Transport]
] = {}


def _messaging_opts() -> tuple[list[cfg.Opt], list[cfg.Opt]]:
    """oslo.messaging's own options that virtsdk reads: ([DEFAULT], [notifications])."""
    default: list[cfg.Opt] = []
    notifications: list[cfg.Opt] = []
    for group, opts in messaging_opts.list_opts():
        if group is None:
            default.extend(o for o in opts if o.name in _DEFAULT_OPT_NAMES)
        elif group == _NOTIFICATIONS_GROUP:
            notifications.extend(opts)
    return default, notifications


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the messaging options and give them virtsdk's defaults.

    Called by :func:`virtsdk.conf.register_all` and by every helper here, on every
    host; idempotent.  Registers oslo.messaging's own ``transport_url``,
    ``control_exchange`` and ``rpc_response_timeout`` in ``[DEFAULT]`` and the
    ``[oslo_messaging_notifications]`` group (and ``[oslo_messaging_metrics]`` /
    ``[oslo_messaging_tracing]``, which oslo.messaging reads on every call but registers
    only on the global ``cfg.CONF``), then sets the defaults
    ``transport_url = inproc://``, ``control_exchange = virtsdk`` and no notification
    ``driver`` (notifications off) on this ``conf`` only (a config file still wins);
    and virtsdk's own ``[DEFAULT] rpc_topic_prefix``.
    """
    default, notifications = _messaging_opts()
    conf.register_opts(default)
    conf.register_opts(_own_opts)
    conf.register_opts(notifications, group=_NOTIFICATIONS_GROUP)
    for module_name, attr, group in _CALL_PATH_OPTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - an oslo.messaging without the feature
            continue
        conf.register_opts(getattr(module, attr), group=group)
    conf.set_default("transport_url", DEFAULT_TRANSPORT_URL)
    conf.set_default("control_exchange", DEFAULT_EXCHANGE)
    conf.set_default("driver", DEFAULT_NOTIFICATION_DRIVER, group=_NOTIFICATIONS_GROUP)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options for the sample config (``oslo-config-generator --namespace virtsdk``).

    Copies of oslo.messaging's options carrying virtsdk's defaults; do not register
    these (use :func:`register_opts`).
    """
    default, notifications = _messaging_opts()
    overrides: dict[str | None, dict[str, Any]] = {
        None: {"transport_url": DEFAULT_TRANSPORT_URL, "control_exchange": DEFAULT_EXCHANGE},
        _NOTIFICATIONS_GROUP: {"driver": DEFAULT_NOTIFICATION_DRIVER},
    }
    out: list[tuple[str | None, list[cfg.Opt]]] = []
    for group, opts in ((None, default), (_NOTIFICATIONS_GROUP, notifications)):
        copies = []
        for opt in opts:
            dup = copy.deepcopy(opt)
            if dup.name in overrides[group]:
                dup.default = overrides[group][dup.name]
            copies.append(dup)
        if group is None:
            copies.extend(_own_opts)
        out.append((group, copies))
    return out


def prefixed_topic(conf: cfg.ConfigOpts, name: str) -> str:
    """The broker topic of ``name`` (``compute``, ``notifications``...) for this cloud:
    ``[DEFAULT] rpc_topic_prefix`` + ``name``."""
    register_opts(conf)
    return f"{conf.rpc_topic_prefix}{name}"


def notification_topics(conf: cfg.ConfigOpts) -> list[str]:
    """``[oslo_messaging_notifications] topics``, each with this cloud's prefix."""
    register_opts(conf)
    return [prefixed_topic(conf, t) for t in conf.oslo_messaging_notifications.topics]


def allowed_remote_exmods() -> list[str]:
    """Exception modules whose classes a caller re-raises as themselves:
    ``virtsdk.*`` and ``virtsdk_*.*`` (builtins are always allowed by oslo)."""
    return _AllowedExceptionModules(["virtsdk.exceptions"])


def _cached(
    cache: dict[tuple[int, str], tuple[cfg.ConfigOpts, oslo_messaging.Transport]],
    conf: cfg.ConfigOpts,
    url: str,
    factory: Any,
) -> oslo_messaging.Transport:
    key = (id(conf), url)
    with _lock:
        hit = cache.get(key)
        if hit is not None and hit[0] is conf:
            return hit[1]
        transport = factory(conf, url=url, allowed_remote_exmods=allowed_remote_exmods())
        cache[key] = (conf, transport)
        return transport


#: longest an idle AMQP listener or reply waiter blocks in one poll (oslo.messaging's
#: ACK_REQUEUE_EVERY_SECONDS_MAX, 5 s): it only notices stop() between polls
AMQP_IDLE_POLL_SECONDS = 0.2


def _prompt_amqp_stop() -> None:
    """Make AMQP listeners and reply waiters notice a stop within
    :data:`AMQP_IDLE_POLL_SECONDS`.

    oslo.messaging's AMQP driver doubles an idle poll's timeout up to 5 s and checks
    for stop() only between polls, so every server stop and transport cleanup on
    RabbitMQ took up to 5 s (a cloud's stop took seconds, a service's exit longer).
    The cost is an idle wake-up every 0.2 s per listener.  Called by
    :func:`get_transport`; a no-op if the driver no longer has the constant.
    """
    try:
        from oslo_messaging._drivers import amqpdriver
    except ImportError:  # pragma: no cover - an oslo.messaging without the AMQP driver
        return
    current = getattr(amqpdriver, "ACK_REQUEUE_EVERY_SECONDS_MAX", None)
    if isinstance(current, (int, float)) and current > AMQP_IDLE_POLL_SECONDS:
        amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MAX = AMQP_IDLE_POLL_SECONDS


def get_transport(conf: cfg.ConfigOpts) -> oslo_messaging.RPCTransport:
    """The RPC transport for ``conf.transport_url``, made once per (conf, URL).

    Called by :func:`get_client` and :func:`get_server` in every service.  Raises
    ``oslo_messaging.InvalidTransportURL`` / ``DriverLoadFailure`` with oslo's message
    for a bad URL or an unknown scheme.
    """
    register_opts(conf)
    _prompt_amqp_stop()
    return _cached(_transports, conf, conf.transport_url, oslo_messaging.get_rpc_transport)


def _broker_hosts(conf: cfg.ConfigOpts) -> tuple[str, str]:
    """(``"host:port, ..."``, the password) of ``conf.transport_url``."""
    url = oslo_messaging.TransportURL.parse(conf, conf.transport_url)
    hosts = ", ".join(f"{h.hostname}:{h.port}" if h.port else str(h.hostname)
                      for h in url.hosts) or "(no host)"
    passwords = [h.password for h in url.hosts if h.password]
    return f"{url.transport}://{hosts}", passwords[0] if passwords else ""


def check_broker(conf: cfg.ConfigOpts, timeout: float | None = None) -> None:
    """Return once the broker of ``[DEFAULT] transport_url`` accepts a message;
    raise :class:`~virtsdk.exceptions.BrokerUnreachable` after ``timeout`` seconds
    (default ``[DEFAULT] rpc_connect_timeout``).

    For clients that must not wait forever (oslo.messaging retries a connection
    without end): the operator CLI before its first RPC, ``EmbeddedCloud.start``.
    The probe is a cast nobody consumes, sent with no connection retry, again every
    quarter second on a thread of its own (so a connect that hangs cannot hold the
    caller past the bound).  The error names the transport and its hosts, never the
    URL's password.  Nothing to check on ``inproc://``.
    """
    register_opts(conf)
    if str(conf.transport_url).startswith(DEFAULT_TRANSPORT_URL):
        return
    bound = conf.rpc_connect_timeout if timeout is None else timeout
    where, password = _broker_hosts(conf)
    client = get_client(conf, "virtsdk-broker-probe").prepare(retry=0)
    done = threading.Event()
    stop = threading.Event()
    last: list[BaseException] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                client.cast(RequestContext(), "probe")
            except Exception as exc:  # noqa: BLE001 - any failure: not reachable yet
                last[:] = [exc]
                stop.wait(0.25)
                continue
            done.set()
            return

    threading.Thread(target=probe, name="broker-probe", daemon=True).start()
    reached = done.wait(bound)
    stop.set()
    if reached:
        return
    reason = str(last[0]).splitlines()[0] if last and str(last[0]) else (
        type(last[0]).__name__ if last else "no answer")
    if password:
        reason = reason.replace(password, "***")
    raise BrokerUnreachable(f"message broker {where} unreachable for {bound:g} s "
                            f"({reason}); check [DEFAULT] transport_url")


def get_notification_transport(conf: cfg.ConfigOpts) -> oslo_messaging.Transport:
    """The notification transport (``[oslo_messaging_notifications] transport_url``,
    falling back to ``[DEFAULT] transport_url``), made once per (conf, URL)."""
    register_opts(conf)
    _prompt_amqp_stop()
    url = conf.oslo_messaging_notifications.transport_url or conf.transport_url
    return _cached(
        _notification_transports, conf, url, oslo_messaging.get_notification_transport
    )


def get_client(
    conf: cfg.ConfigOpts,
    topic: str,
    server: str | None = None,
    version: str = "1.0",
    timeout: float | None = None,
    version_cap: str | None = None,
    manifest: Manifest | None = None,
) -> oslo_messaging.RPCClient:
    """An RPC client for ``topic`` (optionally pinned to one ``server``).

    Called by the API, conductor and compute managers on any host.  Use
    ``client.prepare(server=host).call(ctxt, "method", **kwargs)`` for a request that
    waits for its answer (``oslo_messaging.MessagingTimeout`` after ``timeout``
    seconds, default ``[DEFAULT] rpc_response_timeout``) or ``.cast(...)`` for one that
    does not; ``prepare(fanout=True).cast(...)`` reaches every server of the topic.
    ``version_cap`` refuses to send a message of a newer version
    (``client.can_send_version(v)`` asks); ``manifest`` backports the objects sent to
    the versions a receiver of that version understands (see :class:`RPCAPIVersions`).
    """
    target = oslo_messaging.Target(topic=prefixed_topic(conf, topic), server=server,
                                   version=version)
    return oslo_messaging.get_rpc_client(
        get_transport(conf), target, timeout=timeout, version_cap=version_cap,
        serializer=VirtObjectSerializer(manifest),
    )


@dataclass(frozen=True)
class RPCAPIVersions:
    """The version history of one RPC API, for rolling upgrades (Nova's shape).

    ``history`` maps each version, oldest first, to the object versions a receiver of
    that version understands (``{"Migration": "1.0"}``; objects not named: current).
    ``group_option`` is the ``[upgrade_levels]`` option that caps it.
    """

    history: Mapping[str, Manifest]
    group_option: str

    @property
    def current(self) -> str:
        return list(self.history)[-1]

    def negotiate(self, conf: cfg.ConfigOpts) -> str:
        """The version to send: ``[upgrade_levels] <option>`` if set (it must be a
        known version; ``ConfigFileValueError`` otherwise), else the current one."""
        cap = getattr(conf.upgrade_levels, self.group_option)
        if not cap:
            return self.current
        if cap not in self.history:
            raise cfg.ConfigFileValueError(
                f"[upgrade_levels] {self.group_option} = {cap!r}: not a version of this "
                f"RPC API (known: {', '.join(self.history)})")
        return str(cap)

    def client(self, conf: cfg.ConfigOpts, topic: str,
               timeout: float | None = None) -> oslo_messaging.RPCClient:
        """A client sending at the negotiated version, objects backported to it."""
        version = self.negotiate(conf)
        return get_client(conf, topic, version=version, timeout=timeout,
                          version_cap=version, manifest=self.history[version])


def reliable(conf: cfg.ConfigOpts, client: oslo_messaging.RPCClient) -> Delivery:
    """``client`` wrapped so its messages survive a broker outage of bounded length
    (:class:`~virtsdk.rpc.delivery.Delivery`): ``[DEFAULT] rpc_delivery_window`` on a
    broker, no re-sending on ``inproc://``."""
    register_opts(conf)
    url = str(conf.transport_url)
    window = 0.0 if url.startswith(DEFAULT_TRANSPORT_URL) else conf.rpc_delivery_window
    return Delivery(client, window)


def get_server(
    conf: cfg.ConfigOpts, topic: str, server: str, endpoints: list[object]
) -> oslo_messaging.RPCServer:
    """An RPC server for ``topic`` on host ``server`` dispatching to ``endpoints``.

    Called by each service on its own host.  The caller does ``.start()`` and, to shut
    down, ``.stop()`` then ``.wait()``.  Messages are handled on a thread pool
    (``threading`` executor), so endpoints must be thread-safe.  An endpoint may set a
    ``target = oslo_messaging.Target(version=...)`` attribute to declare its version.
    Errors the endpoints raise are logged here with their traceback and reach the
    caller short, typed and carrying a request id
    (:class:`~virtsdk.rpc.remote_errors.ErrorReportingDispatcher`).
    """
    target = oslo_messaging.Target(topic=prefixed_topic(conf, topic), server=server)
    dispatcher = ErrorReportingDispatcher(endpoints, VirtObjectSerializer(),
                                          f"{topic} on {server}")
    return prompt_stop(RPCServer(get_transport(conf), target, dispatcher))


def prompt_stop(
    server: oslo_messaging.MessageHandlingServer,
) -> oslo_messaging.MessageHandlingServer:
    """Make ``server.wait()`` return as soon as in-flight messages are done.

    oslo.messaging's ``threading`` executor is futurist's pool, whose idle workers
    notice a shutdown only on their one-second idle timeout, so every ``wait()`` costs
    about a second.  The standard library's pool has the same interface
    (``max_workers``, ``submit``, ``shutdown(wait=True)`` after finishing queued work)
    and wakes its workers at shutdown.  Called by :func:`get_server` and the
    notification collector before ``start()``; a no-op for the eventlet executor or an
    oslo.messaging that no longer has the attribute.
    """
    if getattr(server, "executor_type", None) == "threading" and hasattr(
        server, "_executor_cls"
    ):
        server._executor_cls = concurrent.futures.ThreadPoolExecutor  # noqa: SLF001
    return server


def drop_server(server: oslo_messaging.MessageHandlingServer) -> None:
    """Stop ``server`` the way a killed process stops: take no more messages and close
    its broker connection now, without waiting for the handlers in flight.

    ``stop()`` alone only stops polling: on RabbitMQ the consumer stays registered
    until ``wait()`` closes the connection, so the broker keeps handing it messages
    nobody will handle (a restarted service on the same queue would lose every other
    one).  Called by a service's crash stop (``ComputeService.stop(graceful=False)``).
    """
    server.stop()
    listener = getattr(server, "listener", None)
    if listener is not None:
        listener.cleanup()


def stop_servers(servers: Iterable[oslo_messaging.MessageHandlingServer]) -> None:
    """Stop several servers, then wait for them all.

    Called at service or test shutdown.  The waits run side by side, so servers not
    made by :func:`get_server` (whose ``wait()`` can take a second, see
    :func:`prompt_stop`) do not add up.
    """
    servers = list(servers)
    for server in servers:
        server.stop()
    waiters = [threading.Thread(target=server.wait, daemon=True) for server in servers]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()


def get_notifier(
    conf: cfg.ConfigOpts, publisher_id: str
) -> oslo_messaging.Notifier:
    """A notifier that emits ``event_type`` notifications as ``publisher_id``.

    Called by the compute manager (e.g. ``notifier.info(ctxt,
    "live_migration.pre.start", payload)``) on the host doing the work.  Delivery uses
    ``[oslo_messaging_notifications] driver`` (default: none, notifications are off;
    ``messagingv2`` sends them) and ``topics`` (default ``notifications``, with
    ``rpc_topic_prefix``); :class:`virtsdk.rpc.notifications.NotificationCollector`
    receives them.  Payloads go through :class:`VirtObjectSerializer`.
    """
    return oslo_messaging.Notifier(
        get_notification_transport(conf),
        publisher_id=publisher_id,
        topics=notification_topics(conf),
        serializer=VirtObjectSerializer(),
    )


def cleanup(confs: Iterable[cfg.ConfigOpts] | None = None) -> None:
    """Close and forget the cached transports of ``confs`` (default: all of them).

    Called when a cloud stops (its own configurations) and by tests between cases.
    """
    ids = None if confs is None else {id(c) for c in confs}
    entries = []
    with _lock:
        for cache in (_transports, _notification_transports):
            for key in [k for k in cache if ids is None or k[0] in ids]:
                entries.append(cache.pop(key))
    seen: set[int] = set()
    for _conf, transport in entries:
        if id(transport) not in seen:
            seen.add(id(transport))
            transport.cleanup()
