"""A client's view of one room, folded from the stream by the apply rules of docs/PROTOCOL.md
("Room events"): what the browser does in static/js/messagestate.js, written again here so
tests can compare the state a client reaches with the server's current state."""
import copy

from tests.chatclient import STREAM_EVENTS


def number(item):
    return item["seq"] if "kind" in item else item["id"]


class RoomState:
    def __init__(self, me):
        self.me = me
        self.messages = {}  # id -> Message
        self.topic = ""
        self.members = set()  # accounts, from the membership events seen
        self.archived = False
        self.resume = 0  # the highest number seen in the stream

    def load(self, ack, since=None):
        """A join ack: a fresh history (no `since`) is current state; a replay is applied in order."""
        self.topic = ack.get("topic", self.topic)
        for item in sorted([*ack["history"], *ack.get("events", [])], key=number):
            self.apply(item, fresh=since is None)
        return self

    def follow(self, client, room):
        """Apply what `client` received live in `room`, in arrival order (the stream's order)."""
        with client.lock:
            items = [d for e, d in client.events if e in STREAM_EVENTS and d.get("room") == room]
        for item in items:
            if number(item) > self.resume:
                self.apply(item)
        return self

    def apply(self, item, fresh=False):
        self.resume = max(self.resume, number(item))
        kind = item.get("kind", "message")
        getattr(self, "_" + kind)(item, fresh)

    def _message(self, m, fresh):
        if m["id"] in self.messages:
            return
        self.messages[m["id"]] = copy.deepcopy(m)
        parent = self.messages.get(m.get("reply_to", {}).get("id"))
        if parent is not None and not fresh:
            parent["replies"] = m["reply_to"]["replies"]

    def _edit(self, e, fresh):
        target = self.messages.get(e["id"])
        if target is not None:
            target["text"], target["edited_at"] = e["text"], e["edited_at"]

    def _delete(self, e, fresh):
        self.messages.pop(e["id"], None)
        for m in self.messages.values():
            if m.get("reply_to", {}).get("id") == e["id"]:
                m["reply_to"]["excerpt"] = None
        parent = self.messages.get(e.get("reply_to", {}).get("id"))
        if parent is not None:
            parent["replies"] = e["reply_to"]["replies"]

    def _reaction(self, e, fresh):
        target = self.messages.get(e["id"])
        if target is None:
            return
        chips = target.setdefault("reactions", [])
        chip = next((c for c in chips if c["emoji"] == e["emoji"]), None)
        if chip is None:
            chip = {"emoji": e["emoji"], "me": False}
            chips.append(chip)
        chip.update(count=e["count"], users=e["users"])
        if e["user"] == self.me:
            chip["me"] = e["kind"] == "react"
        target["reactions"] = [c for c in chips if c["count"] > 0]

    _react = _unreact = _reaction

    def _topic(self, e, fresh):
        self.topic = e["topic"]

    def _membership(self, e, fresh):
        if e["action"] in ("joined", "added"):
            self.members.add(e["user"])
        else:
            self.members.discard(e["user"])

    _join = _invite = _remove = _membership

    def _archive(self, e, fresh):
        self.archived = e["archived"]

    def view(self, with_me=True):
        """Messages in id order, normalised (no empty `reactions`, no zero `replies`)."""
        out = []
        for message_id in sorted(self.messages):
            m = copy.deepcopy(self.messages[message_id])
            if not m.get("reactions"):
                m.pop("reactions", None)
            if not m.get("replies"):
                m.pop("replies", None)
            for chip in m.get("reactions", []):
                if not with_me:
                    chip.pop("me", None)
            out.append(m)
        return out
