"""The audit server's routes before login, its origins on loopback, and a team opening it at once.

The route walk takes the routes from the running server itself (its Tornado rules, whatever Bokeh and Panel
registered), asks each with a real HTTP client on 127.0.0.1 without a login, and proves that only the login page
answers, that nothing ran: no module imported, no file written, no session made, no error logged."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from seatrial.access import add_user
from seatrial.audit.serve import SeatrialLoginHandler, serve_audit
from test_serve import SECRET, clean_env, free_port, login, session_token, stop

PROBE = "seatrial_route_probe"   # a module the walk names in URLs: importing it would write a file


def _app(root, identity):
    import panel as pn
    return pn.pane.Str(f"user: {identity.name}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "An audit server in this process (threaded), with logins; (server, base url, project root, probe folder)."
    from panel.io.state import state
    tmp = tmp_path_factory.mktemp("routes")
    root, probe = tmp / "project", tmp / "probe"
    root.mkdir(), probe.mkdir()
    (probe / f"{PROBE}.py").write_text(f"open({str(probe / 'imported')!r}, 'w').write('imported')\nclass Probe:\n    __css__ = []\n")
    sys.path.insert(0, str(probe))
    creds = tmp / "users.toml"
    add_user(creds, "a.hansen", "north-sea-2026", "approver")
    port = free_port()
    thread = serve_audit(root, port=port, credentials=creds, cookie_secret=SECRET, app_factory=_app, threaded=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            requests.get(base + "/login", timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield state._servers[thread.server_id][0], base, root, probe
    thread.stop()
    sys.path.remove(str(probe))


def _leaves(router) -> list:
    "Every rule of a Tornado router, nested routers walked."
    out = []
    for rule in router.rules:
        out += _leaves(rule.target) if hasattr(rule.target, "rules") else [rule]
    return out


FILLS = ["this/x/__css__/y", f"{PROBE}/Probe/__css__/y", "js/bokeh.min.js", "panel/panel.min.js", "x"]


def _paths(rule) -> list[str]:
    "Request paths this rule matches: its pattern with each group filled in several ways (a module name among them)."
    pattern = re.sub(r"\(\?[!=][^)]*\)", "", rule.matcher.regex.pattern).lstrip("^").rstrip("$").replace("/?", "/")
    found = []
    for fill in FILLS:
        path = re.sub(r"\((?!\?)[^()]*\)", fill, pattern).replace("\\", "")
        if rule.matcher.regex.match(path) and path not in found: found.append(path)
    return found


async def _handshake(url: str, origin: str):
    return await websocket_connect(HTTPRequest(url, headers={"Origin": origin}))


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


def test_every_route_refuses_before_login(served):
    server, base, root, probe = served
    app = server._tornado
    rules = _leaves(app.default_router)
    assert len(rules) >= 8, rules   # Bokeh's and Panel's routes are there: the walk is of the real server
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert "this" not in sys.modules and PROBE not in sys.modules
    errors = _Errors()
    loggers = [logging.getLogger(n) for n in ("", "tornado", "tornado.application", "tornado.general", "bokeh", "panel")]
    for lg in loggers: lg.addHandler(errors)
    asked = []
    try:
        http = requests.Session()
        token = re.search(r'name="_xsrf" value="([^"]+)"', http.get(base + "/login").text).group(1)   # XSRF passes: the login check refuses
        query = f"?bokeh-autoload-element=x&bokeh-app-path=/&bokeh-absolute-url={base}"
        for rule in rules:
            login_page = isinstance(rule.target, type) and issubclass(rule.target, SeatrialLoginHandler)
            paths = _paths(rule)
            assert paths, f"no request path made for route {rule.matcher.regex.pattern}"
            for path in paths:
                for method in ("GET", "HEAD", "POST"):
                    r = http.request(method, base + path + query, data={"_xsrf": token} if method == "POST" else None,
                                     allow_redirects=False)
                    asked.append((method, path, r.status_code))
                    if login_page: continue
                    assert r.status_code in (302, 401, 403), (method, path, r.status_code, r.text[:200])
                    if r.status_code == 302: assert r.headers["Location"].startswith("./login"), r.headers["Location"]
                if not login_page:   # a websocket handshake on every route
                    with pytest.raises(HTTPClientError) as e:
                        asyncio.run(_handshake(base.replace("http", "ws") + path, base))
                    assert e.value.code in (302, 401, 403), (path, e.value.code)
    finally:
        for lg in loggers: lg.removeHandler(errors)
    assert any(p.startswith("/components/this/") for _, p, _ in asked) and any(p.startswith("/static/") for _, p, _ in asked)
    assert "this" not in sys.modules and PROBE not in sys.modules and not (probe / "imported").exists()
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before          # nothing written
    assert all(not ctx.sessions for ctx in app._applications.values())           # no session made
    assert errors.records == []                                                     # nothing failed on the server


def test_logged_in_component_route_imports_nothing(served):
    _, base, _, probe = served
    s, _ = login(base, "a.hansen", "north-sea-2026")
    assert s.get(base + "/", allow_redirects=False).status_code == 200
    assert s.get(f"{base}/components/{PROBE}/Probe/__css__/y").status_code == 404
    assert PROBE not in sys.modules and not (probe / "imported").exists()
    assert s.get(base + "/static/js/bokeh.min.js").status_code == 200   # what the page needs is there


async def _ack(base: str, cookies: dict, token: str, origin: str) -> str:
    headers = {"Origin": origin, "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    conn = await websocket_connect(HTTPRequest(base.replace("http", "ws") + "/ws", headers=headers), subprotocols=["bokeh", token])
    try: return json.loads(await conn.read_message())["msgtype"]
    finally: conn.close()


def test_loopback_origins_by_either_name(served):
    base = served[1]
    port = base.rsplit(":", 1)[1]
    s, _ = login(base, "a.hansen", "north-sea-2026")
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        token = session_token(s.get(base + "/").text)
        assert asyncio.run(_ack(base, s.cookies.get_dict(), token, origin)) == "ACK", origin
    token = session_token(s.get(base + "/").text)
    with pytest.raises(HTTPClientError):
        asyncio.run(_ack(base, s.cookies.get_dict(), token, f"http://localhost.evil.example:{port}"))


# --- a team at once -------------------------------------------------------------------------------------------------

TEAM = r"""
import sys
from seatrial.audit.serve import serve_audit
root, port, creds, secret = sys.argv[1:5]
serve_audit(root, port=int(port), credentials=creds, cookie_secret=secret, processes=2)
"""
READY = {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event",
                     "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map", "entries": []}}}]}


async def _message(conn) -> tuple[str, str]:
    header = json.loads(await conn.read_message())
    await conn.read_message()
    content = await conn.read_message()
    for _ in range(2 * header.get("num_buffers", 0)): await conn.read_message()   # each buffer: a header and its bytes
    return header["msgtype"], content


async def _first_page(base: str, cookies: dict) -> str:
    "What a browser gets: the page, its websocket, the document, and (after document_ready) the patches that complete it."
    from tornado.httpclient import AsyncHTTPClient
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    page = await AsyncHTTPClient().fetch(base + "/", headers={"Cookie": cookie}, request_timeout=600, connect_timeout=600)
    token = session_token(page.body.decode())
    conn = await websocket_connect(HTTPRequest(base.replace("http", "ws") + "/ws", headers={"Origin": base, "Cookie": cookie},
                                               request_timeout=600), subprotocols=["bokeh", token], max_message_size=1 << 30)
    try:
        assert (await _message(conn))[0] == "ACK"
        for part in ({"msgid": "1", "msgtype": "PULL-DOC-REQ"}, {}, {}): await conn.write_message(json.dumps(part))
        kind, doc = await _message(conn)
        assert kind == "PULL-DOC-REPLY"
        for part in ({"msgid": "2", "msgtype": "PATCH-DOC"}, {}, READY): await conn.write_message(json.dumps(part))
        while not ("map-view" in doc and "overview-view" in doc):   # the Review tab: the first page is there
            doc += (await asyncio.wait_for(_message(conn), 600))[1]
        return doc
    finally:
        conn.close()


def test_twenty_reviewers_at_once_with_two_processes(fleet_project, tmp_path):
    "20 sessions opening the real app at once on two worker processes: each gets its complete first page, as itself."
    from tornado.httpclient import AsyncHTTPClient
    creds = tmp_path / "users.toml"
    names = [f"reviewer{i:02d}" for i in range(20)]
    for name in names: add_user(creds, name, "a-long-password-2026", "viewer")
    port = free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-c", TEAM, str(fleet_project), str(port), str(creds), SECRET],
                            env=clean_env(OMP_WAIT_POLICY="PASSIVE"), stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):   # warm-up and preload happen before it listens
            assert proc.poll() is None, log.read_text()
            try:
                requests.get(base + "/login", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        jars = [login(base, name, "a-long-password-2026")[0].cookies.get_dict() for name in names]

        async def team():
            AsyncHTTPClient.configure(None, max_clients=len(jars))
            return await asyncio.gather(*(_first_page(base, jar) for jar in jars))
        docs = asyncio.run(team())
        for name, doc in zip(names, docs):
            assert [n for n in names if n in doc] == [name], name   # each reviewer signed in as themselves only
            assert "cdn.holoviz.org" not in doc and "static/extensions/panel" in doc   # stylesheets from this server
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
    finally:
        stop(proc)
    def alive(pid: str) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")   # a zombie is dead
    deadline = time.monotonic() + 120   # the workers end with the server process (a big one takes a moment to go)
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline: time.sleep(0.5)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the server"
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
