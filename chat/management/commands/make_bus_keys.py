"""`python manage.py make_bus_keys [--nodes 2] [--write DIR]`: CURVE keys for the cluster bus.

Prints (or writes, one mode-600 env file per process) the settings chat.busauth reads: the
broker gets its secret key and the list of node public keys it admits; each node gets the
broker's public key and its own secret key. `--server-secret-key` makes keys for more nodes
of an existing broker (append the printed public keys to its CHAT_BUS_CLIENT_PUBLIC_KEYS).
Lines are `NAME='value'`, for a shell's `set -a; . FILE` or systemd's EnvironmentFile=.
"""
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chat import busauth


def env_lines(values):
    return "".join(f"{name}='{value}'\n" for name, value in values.items())


def key_files(keys, with_broker):
    """{file name: text}: broker.env (unless only adding nodes) and node1.env, node2.env..."""
    files = {"broker.env": env_lines(keys.broker_env())} if with_broker else {}
    for index in range(len(keys.nodes)):
        files[f"node{index + 1}.env"] = env_lines(keys.node_env(index))
    return files


class Command(BaseCommand):
    help = "Make ZeroMQ CURVE keys for the broker and the nodes of a cluster (README \"Bus security\")."

    def add_arguments(self, parser):
        parser.add_argument("--nodes", type=int, default=1, help="node key pairs to make (one per node is best)")
        parser.add_argument("--write", metavar="DIR", help="write broker.env and nodeN.env there (mode 600)")
        parser.add_argument("--server-secret-key", help="an existing broker's key: make node keys for it only")

    def handle(self, *args, nodes, write, server_secret_key, **options):
        if nodes < 1:
            raise CommandError("--nodes must be at least 1")
        try:
            secret = server_secret_key and busauth.check_key("--server-secret-key", server_secret_key)
        except busauth.BusKeyError as exc:
            raise CommandError(str(exc)) from None
        keys = busauth.generate(nodes, server_secret=secret)
        files = key_files(keys, with_broker=not secret)
        if write:
            self.write_files(Path(write), files)
        else:
            for name, text in files.items():
                self.stdout.write(f"# {name}: keep it secret\n{text}")
        if secret:
            self.stdout.write("# append to the broker's CHAT_BUS_CLIENT_PUBLIC_KEYS (comma-separated): "
                              + ",".join(node.public for node in keys.nodes) + "\n")

    def write_files(self, directory, files):
        directory.mkdir(parents=True, exist_ok=True)
        taken = [name for name in files if (directory / name).exists()]
        if taken:
            raise CommandError(f"{directory} already has {', '.join(taken)}; not overwriting keys")
        for name, text in files.items():
            descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
            self.stdout.write(f"wrote {directory / name}\n")
