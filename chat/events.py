"""Socket.IO event handlers: one small function per event, validate -> service -> reply.

Errors are values here: a handler returns `{ok: false, error: {code, message}}` and never
raises into python-socketio, so a bad payload can neither crash the server nor drop the
connection.
"""
import functools
import logging

import socketio
from django.conf import settings

from chat import protocol, roomlog
from chat.protocol import ProtocolError, failure

log = logging.getLogger(__name__)


def guarded(handler):
    """Turn ProtocolErrors and bugs into error acks."""

    @functools.wraps(handler)
    def wrapper(sid, data=None, *_extra):
        try:
            return handler(sid, data)
        except ProtocolError as exc:
            return failure(exc.code, exc.message, **exc.extra)
        except Exception:
            log.exception("handler %s failed for sid=%s", handler.__name__, sid)
            return failure(protocol.INTERNAL, "internal error; the request was not completed")

    return wrapper


def register(sio, service):
    limits = service.limits

    @sio.event
    def connect(sid, environ, auth=None):
        try:
            service.connect(sid, environ, auth)
        except ProtocolError as exc:
            log.info("refused sid=%s addr=%s code=%s", sid, environ.get("REMOTE_ADDR"), exc.code)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.as_dict()) from None
        except Exception:
            log.exception("connect failed for sid=%s", sid)
            error = {"code": protocol.INTERNAL, "message": "internal error"}
            raise socketio.exceptions.ConnectionRefusedError(error["message"], error) from None

    @sio.event
    def disconnect(sid, reason=None):
        service.disconnect(sid, reason)

    @sio.on("join")
    @guarded
    def join(sid, data):
        return service.join(sid, protocol.parse_join(data))

    @sio.on("leave")
    @guarded
    def leave(sid, data):
        return service.leave(sid, protocol.parse_leave(data))

    @sio.on("send")
    @guarded
    def send(sid, data):
        return service.send(sid, protocol.parse_send(data, limits.max_message))

    for kind in roomlog.KINDS.values():
        if kind.request is not None:  # `join` events are made by joining and creating rooms
            _register_change(sio, service, kind)

    @sio.on("history")
    @guarded
    def history(sid, data):
        return service.history(sid, protocol.parse_history(data, limits.history, limits.page_max))

    @sio.on("search")
    @guarded
    def search(sid, data):
        return service.search(sid, data)

    @sio.on("typing")
    @guarded
    def typing(sid, data):
        room, active = protocol.parse_typing(data)
        service.typing(sid, room, active)

    @sio.on("rooms")
    @guarded
    def rooms(sid, data):
        return service.rooms(sid, protocol.parse_room_search(data))

    @sio.on("my_rooms")
    @guarded
    def my_rooms(sid, data):
        return service.my_rooms(sid)

    @sio.on("create_room")
    @guarded
    def create_room(sid, data):
        return service.create_room(sid, protocol.parse_create_room(data))

    @sio.on("open_dm")
    @guarded
    def open_dm(sid, data):
        return service.open_dm(sid, protocol.parse_open_dm(data, settings.CHAT_DM_MAX))

    @sio.on("mark_read")
    @guarded
    def mark_read(sid, data):
        return service.mark_read(sid, *protocol.parse_mark_read(data))

    @sio.on("mute")
    @guarded
    def mute(sid, data):
        return service.mute(sid, *protocol.parse_mute(data))

    @sio.on("ban")
    @guarded
    def ban(sid, data):
        room, user, reason = protocol.parse_ban(data)
        return service.ban(sid, room, user, reason)

    @sio.on("unban")
    @guarded
    def unban(sid, data):
        room, user, _ = protocol.parse_ban(data)
        return service.unban(sid, room, user)

    @sio.on("*")
    def unknown(event, sid, *_args):
        return failure(protocol.UNKNOWN_EVENT, f"unknown event {str(event)[:64]!r}")


def _register_change(sio, service, kind):
    """One socket event per room event kind: its validator, then the shared service method."""

    @guarded
    def change(sid, data):
        return service.change(sid, kind.parse(data, service.limits))

    change.__name__ = kind.request
    sio.on(kind.request, change)
