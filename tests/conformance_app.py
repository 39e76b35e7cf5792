"""The conformance app: this project's server stack serving the reference behaviour that the
official Engine.IO and Socket.IO protocol test suites expect (../shared/protocol-suites).

Started by tests/test_protocol_suites.py only; nothing in the product imports it or routes
to it. It is made of the chat's own parts: chat.server's gevent server and handler
(`ChatHandler`), chat.engine's Engine.IO server, chat.wire's websocket sessions and
chat.outbox's bounded Socket.IO server, configured from settings (CHAT_PING_INTERVAL_MS and
the rest, which the test sets to the suites' 300/200/1000 ms). Only the event handlers are
the suites' instead of the chat's:
- /engine.io/: an Engine.IO server that echoes every message to its sender;
- /socket.io/: namespaces `/` and `/custom`, each emitting `auth` with the handshake's auth
  object on connection; on `/`, `message` answered with `message-back` and
  `message-with-ack` acknowledged, both with the same arguments.

Run: DJANGO_SETTINGS_MODULE=settings python tests/conformance_app.py --port 0
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import signal  # noqa: E402

import django  # noqa: E402
import gevent  # noqa: E402
import socketio  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def echo_engine():
    from chat.engine import EngineServer
    from chat.server import engine_options

    engine = EngineServer(**engine_options())
    engine.on("message", lambda sid, data: engine.send(sid, data))
    return engine


def reference_socketio():
    from chat.server import socketio_server

    sio = socketio_server()
    for namespace in ("/", "/custom"):
        sio.on("connect", namespace=namespace,
               handler=lambda sid, environ, auth, ns=namespace: sio.emit("auth", auth or {}, to=sid, namespace=ns))
    sio.on("message", lambda sid, *args: sio.emit("message-back", args, to=sid))
    sio.on("message-with-ack", lambda sid, *args: args)
    return sio


def build_app():
    engine, sio_app = echo_engine(), socketio.WSGIApp(reference_socketio())

    def app(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/engine.io/"):
            return engine.handle_request(environ, start_response)
        return sio_app(environ, start_response)

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    django.setup()
    from gevent.event import Event
    from gevent.pywsgi import WSGIServer

    from chat.server import ChatHandler

    server = WSGIServer((args.host, args.port), build_app(), handler_class=ChatHandler, log=None,
                        error_log=logging.getLogger("gevent.pywsgi"))
    server.start()
    print(f"listening on http://{args.host}:{server.server_port}", flush=True)
    stopped = Event()
    gevent.signal_handler(signal.SIGTERM, stopped.set)
    stopped.wait()
    server.stop(timeout=1)


if __name__ == "__main__":
    main()
