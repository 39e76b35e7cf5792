"""Start a chat node: `python run_server.py [--host 127.0.0.1] [--port 8000] [--broker tcp://H:P] [--workers N]`,
or the cluster's ZeroMQ forwarder: `python run_server.py broker [--bind tcp://127.0.0.1:5555]`.

A node is patched by gevent before anything else is imported. The broker is not: it forwards
in zmq's C loop and authenticates peers in a real thread (chat.broker, chat.busauth)."""
import sys


def serve_node(argv):
    from gevent import monkey

    monkey.patch_all()

    import argparse
    import os

    import django

    parser = argparse.ArgumentParser(description="Chat node: pages, JSON API and Socket.IO on one port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (it is logged)")
    parser.add_argument("--broker", help="join a cluster: tcp://HOST:PORT (or set CHAT_BROKER_URL)")
    parser.add_argument("--workers", type=int, default=0,
                        help="job workers (manage.py db_worker) to run beside this node and stop with it")
    args = parser.parse_args(argv)
    if args.broker:
        os.environ["CHAT_BROKER_URL"] = args.broker
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    django.setup()
    from chat import server, workerprocs

    workers = workerprocs.start(max(args.workers, 0))
    try:
        server.serve(args.host, args.port, on_stop=lambda: workerprocs.signal_all(workers))
    finally:
        workerprocs.stop(workers)


def serve_broker(argv):
    import argparse
    import logging
    import os

    parser = argparse.ArgumentParser(prog="run_server.py broker", description="ZeroMQ forwarder for a cluster.")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="XSUB here, XPUB on port+1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.conf import settings  # the CHAT_BUS_* keys; the broker needs no database

    from chat import broker, busauth

    try:
        auth = busauth.broker_auth(args.bind, settings)
    except busauth.BusKeyError as exc:
        raise SystemExit(f"broker refused to start: {exc}") from None
    broker.run(args.bind, auth)


if __name__ == "__main__":
    if sys.argv[1:2] == ["broker"]:
        serve_broker(sys.argv[2:])
    else:
        serve_node(sys.argv[1:])
