"""`python manage.py chatserver [--host] [--port]`: the same server as run_server.py."""
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve pages, the JSON API and Socket.IO on one port (gevent)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        from gevent import monkey

        if not monkey.is_module_patched("socket"):
            self.stderr.write("run through manage.py, which patches gevent first")
            return
        from chat import server

        server.serve(host, port)
