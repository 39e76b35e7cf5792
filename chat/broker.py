"""The cluster's ZeroMQ forwarder: nodes PUBlish to XSUB on PORT and SUBscribe at XPUB PORT+1.

pyzmq's `zmq.proxy` moves messages one way and subscriptions the other, so publishers
filter at the source and a node only receives the topics it subscribed to. Heartbeats on
both sockets drop peers whose link died silently; nodes reconnect by themselves.

Both sockets are CURVE servers admitting only the node keys from settings (chat.busauth);
the ZAP handler runs in a real thread, so this process must not be gevent-patched
(run_server.py patches only for a node).
"""
import logging
from urllib.parse import urlsplit

import zmq

from chat import busauth

log = logging.getLogger(__name__)

HEARTBEAT_IVL_MSECS = 1000
HEARTBEAT_TIMEOUT_MSECS = 3000
QUEUE_LIMIT_MESSAGES = 100_000  # per peer; past it ZeroMQ drops for that peer (nodes recover from the DB)


def split_endpoint(url):
    """'tcp://host:5555' -> ('tcp://host:5555', 'tcp://host:5556')."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        raise ValueError(f"broker address must look like tcp://HOST:PORT, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{parts.port}", f"tcp://{host}:{parts.port + 1}"


def tune(sock):
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MSECS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MSECS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MSECS)
    sock.setsockopt(zmq.SNDHWM, QUEUE_LIMIT_MESSAGES)
    sock.setsockopt(zmq.RCVHWM, QUEUE_LIMIT_MESSAGES)
    sock.setsockopt(zmq.LINGER, 0)


def run(bind_url, auth):
    """Bind XSUB/XPUB and forward until interrupted; `auth` is a busauth.ServerAuth, or None
    for a plain bus (busauth.broker_auth decides whether that is allowed)."""
    publish_side, subscribe_side = split_endpoint(bind_url)
    context = zmq.Context.instance()
    authenticator = busauth.start_authenticator(context, auth) if auth else None
    frontend = context.socket(zmq.XSUB)
    backend = context.socket(zmq.XPUB)
    for sock in (frontend, backend):
        tune(sock)
        if auth:
            busauth.secure_server(sock, auth)
    frontend.bind(publish_side)
    backend.bind(subscribe_side)
    log.info("broker publishers=%s subscribers=%s %s", publish_side, subscribe_side,
             f"curve, {len(auth.allowed)} node key(s)" if auth else "UNAUTHENTICATED")
    try:
        zmq.proxy(frontend, backend)
    except (KeyboardInterrupt, zmq.ContextTerminated):
        pass
    finally:
        frontend.close(0)
        backend.close(0)
        if authenticator:
            authenticator.stop()
