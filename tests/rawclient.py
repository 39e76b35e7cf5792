"""A raw Engine.IO v4 / Socket.IO v5 websocket client, for tests that must misbehave at the
transport level (stop reading, send malformed frames)."""
import json
import socket

import websocket


class RawSocket:
    def __init__(self, url, rcvbuf=None):
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else ()
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(ws_url, timeout=10, sockopt=options)
        assert self.ws.recv().startswith("0{")  # Engine.IO open
        self.ack_id = 0

    def connect(self, **auth):
        self.ws.send("40" + json.dumps(auth))
        return self.until(lambda frame: frame.startswith('42["welcome"'))

    def call(self, event, data):
        self.ack_id += 1
        self.ws.send(f"42{self.ack_id}" + json.dumps([event, data]))
        prefix = f"43{self.ack_id}"
        return json.loads(self.until(lambda frame: frame.startswith(prefix))[len(prefix):])[0]

    def until(self, wanted):
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
            elif wanted(frame):
                return frame

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class RawPolling:
    """An Engine.IO long-polling session driven by hand: it can simply stop polling."""

    SEPARATOR = "\x1e"

    def __init__(self, url):
        import requests

        self.http = requests.Session()
        self.base = url + "/socket.io/?EIO=4&transport=polling"
        opened = self.http.get(self.base, timeout=10).text
        assert opened.startswith("0{")
        self.sid = json.loads(opened[1:])["sid"]

    def post(self, packet):
        assert self.http.post(f"{self.base}&sid={self.sid}", data=packet, timeout=10).text == "ok"

    def poll(self):
        return self.http.get(f"{self.base}&sid={self.sid}", timeout=30).text.split(self.SEPARATOR)

    def until(self, wanted):
        while True:
            for packet in self.poll():
                if wanted(packet):
                    return packet
