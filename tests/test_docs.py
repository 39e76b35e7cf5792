"""The documentation covers what the code does: every event handled or emitted, every error
code, every setting."""
import re

from tests.serverproc import ROOT

PROTOCOL = (ROOT / "docs" / "PROTOCOL.md").read_text()
README = (ROOT / "README.md").read_text()


def source(*paths):
    return "\n".join((ROOT / path).read_text() for path in paths)


def test_every_handled_and_emitted_event_has_a_section():
    handled = set(re.findall(r'@sio\.on\("(\w+)"\)', source("chat/events.py")))
    services = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "chat" / "services").glob("*.py"))]
    emitted = set(re.findall(r'\.emit(?:_local)?\(\s*"(\w+)"', source(*services, "chat/server.py")))
    kinds = re.findall(r'Kind\("(\w+)", "(\w+)"', source("chat/roomlog.py"))  # room events: (request, announce)
    assert len(kinds) >= 5
    handled |= {request for request, _ in kinds}
    emitted |= {announce for _, announce in kinds} | set(re.findall(r'^MESSAGE_EVENT = "(\w+)"', source("chat/roomlog.py"),
                                                                       re.MULTILINE))
    assert {"join", "send", "message", "presence", "welcome"} <= handled | emitted
    for event in handled | emitted:
        assert f"### `{event}`" in PROTOCOL, event


def test_every_error_code_is_documented():
    codes = re.findall(r'^[A-Z_]+ = "(\w+)"$', source("chat/protocol.py"), re.MULTILINE)
    assert len(codes) >= 10
    for code in codes:
        assert f"`{code}`" in PROTOCOL, code


def test_every_setting_is_in_the_readme():
    names = set(re.findall(r'env_(?:str|int|bool|list|millis)\("(\w+)"', source("settings.py")))
    names |= {"DATABASE_URL", "SECRET_KEY"}
    for name in names:
        assert f"`{name}`" in README, name
