"""Start the chat server: `python run_server.py [--host 127.0.0.1] [--port 8000]`."""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402

import django  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Chat server: pages, JSON API and Socket.IO on one port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (it is logged)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    django.setup()
    from chat import server

    server.serve(args.host, args.port)


if __name__ == "__main__":
    main()
