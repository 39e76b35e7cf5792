"""Who may use the cluster bus: ZeroMQ CURVE keys for the broker and its nodes, from settings.

Anyone who can reach the broker's two ports could otherwise read every room's traffic and
publish messages, bans and python-socketio `emit`/`disconnect` frames for any sid. With
CURVE (RFC 26, built into libzmq) every link is encrypted and both ends prove their keys:

- the broker holds the server key pair (`CHAT_BUS_SERVER_SECRET_KEY`); its two sockets are
  CURVE servers whose ZAP handler (pyzmq's `ThreadAuthenticator`, in a real thread of the
  un-patched broker process) admits only the node public keys in `CHAT_BUS_CLIENT_PUBLIC_KEYS`;
  `ZAP_ENFORCE_DOMAIN` makes libzmq refuse every peer if that handler is not answering,
  instead of failing open;
- a node knows the broker's public key (`CHAT_BUS_SERVER_PUBLIC_KEY`) and holds its own
  secret key (`CHAT_BUS_CLIENT_SECRET_KEY`; the public half is derived from it), so it also
  refuses a broker that is not the real one.

A peer with no keys fails the handshake (mechanism mismatch); one with keys the broker does
not list is denied by ZAP. Either way it neither receives nor sends a single frame.

Without keys a broker or node refuses to start: `CHAT_BUS_INSECURE` allows a plain bus only
when the bus address is loopback (one machine, development). `manage.py make_bus_keys`
makes a key set; `generate()` is the same generator for tests, bench/ and deploy/cluster.py.
Keys are Z85 text, 40 characters (never contains quotes, commas or backslashes).
"""
import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import zmq
from zmq.utils import z85

log = logging.getLogger(__name__)

ZAP_DOMAIN = "chat-bus"
KEY_BYTES = 32
HOW_TO_FIX = ("run `python manage.py make_bus_keys` and set its output (README \"Bus security\"), "
              "or CHAT_BUS_INSECURE=1 with a loopback broker address for a one-machine test")


class BusKeyError(ValueError):
    """The bus keys in settings are missing, malformed, or refused for this address."""


@dataclass(frozen=True)
class NodeKey:
    public: str
    secret: str


@dataclass(frozen=True)
class BusKeys:
    """One cluster's key set: the broker's pair and one pair per node."""

    server_public: str
    server_secret: str
    nodes: tuple

    def broker_env(self):
        return {"CHAT_BUS_SERVER_SECRET_KEY": self.server_secret,
                "CHAT_BUS_CLIENT_PUBLIC_KEYS": ",".join(node.public for node in self.nodes)}

    def node_env(self, index=0):
        return {"CHAT_BUS_SERVER_PUBLIC_KEY": self.server_public,
                "CHAT_BUS_CLIENT_SECRET_KEY": self.nodes[index].secret}


@dataclass(frozen=True)
class ServerAuth:
    """What the broker needs: its secret key and the node keys it admits."""

    secret: str
    allowed: frozenset


@dataclass(frozen=True)
class ClientAuth:
    """What a node needs: the broker's public key and its own secret key."""

    server_public: str
    secret: str

    @property
    def public(self):
        return public_of(self.secret)


def generate(nodes=1, server_secret=None):
    """A fresh key set (`zmq.curve_keypair`); with `server_secret`, new node keys for that broker."""
    if server_secret:
        server_public = public_of(server_secret)
    else:
        server_public, server_secret = (key.decode() for key in zmq.curve_keypair())
    pairs = []
    for _ in range(nodes):
        public, secret = zmq.curve_keypair()
        pairs.append(NodeKey(public.decode(), secret.decode()))
    return BusKeys(server_public, server_secret, tuple(pairs))


def public_of(secret):
    return zmq.curve_public(secret.encode()).decode()


def check_key(name, value):
    """A Z85 CURVE key of 32 bytes, or BusKeyError naming the setting."""
    try:
        decoded = z85.decode(value.encode("ascii"))
    except (ValueError, UnicodeError, KeyError, IndexError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise BusKeyError(f"{name} is not a CURVE key (40 Z85 characters from make_bus_keys)")
    return value


def is_loopback(url):
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_or_refuse(role, url, settings, missing):
    if settings.CHAT_BUS_INSECURE and is_loopback(url):
        log.warning("%s bus at %s is NOT authenticated (CHAT_BUS_INSECURE, loopback only)", role, url)
        return None
    if settings.CHAT_BUS_INSECURE:
        raise BusKeyError(f"CHAT_BUS_INSECURE is only allowed for a loopback bus address, not {url}; "
                          f"set {' and '.join(missing)}: {HOW_TO_FIX}")
    raise BusKeyError(f"the {role} bus at {url} needs {' and '.join(missing)}: {HOW_TO_FIX}")


def _keys_or_plain(role, url, settings, names):
    """The settings `names` for `role`, all set; None when none is set and a plain bus is
    allowed; else BusKeyError."""
    values = [getattr(settings, name) for name in names]
    missing = [name for name, value in zip(names, values) if not value]
    if len(missing) == len(names):
        return _plain_or_refuse(role, url, settings, missing)
    if missing:
        raise BusKeyError(f"the {role} needs {missing[0]} too: {HOW_TO_FIX}")
    return values


def broker_auth(bind_url, settings):
    """ServerAuth from settings, None for an allowed plain bus, else BusKeyError."""
    keys = _keys_or_plain("broker", bind_url, settings, ("CHAT_BUS_SERVER_SECRET_KEY", "CHAT_BUS_CLIENT_PUBLIC_KEYS"))
    if keys is None:
        return None
    secret, allowed = keys
    check_key("CHAT_BUS_SERVER_SECRET_KEY", secret)
    for key in allowed:
        check_key("CHAT_BUS_CLIENT_PUBLIC_KEYS", key)
    return ServerAuth(secret, frozenset(allowed))


def node_auth(broker_url, settings):
    """ClientAuth from settings, None for an allowed plain bus, else BusKeyError."""
    keys = _keys_or_plain("node", broker_url, settings, ("CHAT_BUS_SERVER_PUBLIC_KEY", "CHAT_BUS_CLIENT_SECRET_KEY"))
    if keys is None:
        return None
    server_public, secret = keys
    return ClientAuth(check_key("CHAT_BUS_SERVER_PUBLIC_KEY", server_public),
                      check_key("CHAT_BUS_CLIENT_SECRET_KEY", secret))


def secure_server(sock, auth):
    """Make `sock` a CURVE server that asks the ZAP handler about every peer (before bind)."""
    sock.curve_server = True
    sock.curve_secretkey = auth.secret.encode()
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def secure_client(sock, auth):
    """Make `sock` a CURVE client of the broker (before connect)."""
    sock.curve_serverkey = auth.server_public.encode()
    sock.curve_publickey = auth.public.encode()
    sock.curve_secretkey = auth.secret.encode()


class AllowList:
    """ZAP credentials provider: a node key is admitted only if it is listed."""

    def __init__(self, allowed):
        self.allowed = {key.encode() for key in allowed}

    def callback(self, domain, key):
        if key in self.allowed:
            return True
        log.warning("refused a bus peer with an unlisted key %s...", key[:8].decode(errors="replace"))
        return False


def start_authenticator(context, auth):
    """Run pyzmq's ZAP handler in a thread of `context`; start it before binding."""
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=AllowList(auth.allowed))
    return authenticator
