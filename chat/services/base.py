"""The service layer's value types and the client address rule, shared by its parts."""
from dataclasses import dataclass

from django.conf import settings

from chat import identity


@dataclass(frozen=True)
class Limits:
    history: int
    since_max: int
    page_max: int
    max_message: int
    rooms_per_connection: int
    members_listed: int
    rooms_listed: int
    token_max_age_secs: int
    presence_detail_max: int
    presence_interval_secs: float
    max_connections_per_ip: int  # 0: unlimited


@dataclass(frozen=True)
class Connection:
    """What this node knows of one of its connections."""

    who: identity.Identity
    address: str


def account_channel(user_id):
    """The Socket.IO room of every connection of one account, on every node."""
    return f"u:{user_id}"


def client_address(environ, trusted_proxies=None):
    """The client's address; behind trusted proxies, the last untrusted hop of X-Forwarded-For."""
    trusted = settings.CHAT_TRUSTED_PROXIES if trusted_proxies is None else trusted_proxies
    address = environ.get("REMOTE_ADDR", "?")
    if address not in trusted:
        return address
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else address
