"""seatrial.audit.serve over real HTTP: a Panel server in a subprocess on 127.0.0.1, logged into with `requests`,
its websocket spoken to with tornado's client (Bokeh's protocol: ACK, then PULL-DOC-REQ for the session's document)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import websocket_connect

from seatrial.access import AccessError, add_user, remove_user
from seatrial.audit.serve import external_resources, serve_audit

ANN, ANN_PW = "a.hansen", "north-sea-2026"
BO, BO_PW = "b.olsen", "baltic-sea-2026"
SECRET = "k3Jd9-test-cookie-secret-0123456789abcdef"

# The app each session gets: who is looking, and with which roles (escaped: names are data, not markup).
SERVER = """
import html, sys
import panel as pn
from seatrial.audit.serve import external_resources, serve_audit

def app(root, identity):
    return pn.Column(pn.pane.HTML(f"<p class='who'>user: {html.escape(identity.name)}</p>"),
                     pn.pane.Str("roles: " + ", ".join(sorted(identity.roles))))

root, port, cred, secret = sys.argv[1:5]
serve_audit(root, port=int(port), credentials=cred or None, cookie_secret=secret or None, app_factory=app)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("SEATRIAL_COOKIE_SECRET", "PANEL_COOKIE_SECRET", "BOKEH_COOKIE_SECRET", "BOKEH_ALLOW_WS_ORIGIN", "BOKEH_RESOURCES",
            "SEATRIAL_USER")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def start_server(tmp: Path, credentials: Path | None, secret: str | None, **env: str):
    "Start the audit server in a subprocess; return (process, base url) once it answers."
    port = free_port()
    log = open(tmp / f"server-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp), str(port), str(credentials or ""), secret or ""],
                            env=clean_env(**env), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180   # the machine may be busy; this is a start-up wait, not a timing assertion
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"audit server exited with {proc.returncode}:\n{(tmp / f'server-{port}.log').read_text()}")
        try:
            requests.get(base + "/", allow_redirects=False, timeout=5)
            return proc, base
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("audit server did not start")


def stop(proc) -> None:
    proc.terminate()
    try: proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill(); proc.wait()


@pytest.fixture(scope="module")
def creds(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("access") / "users.toml"
    add_user(path, ANN, ANN_PW, "approver")
    add_user(path, BO, BO_PW, "viewer")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, creds):
    proc, base = start_server(tmp_path_factory.mktemp("served"), creds, SECRET)
    yield base
    stop(proc)


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    proc, base = start_server(tmp_path_factory.mktemp("local"), None, None, SEATRIAL_USER="c.berg")
    yield base
    stop(proc)


def xsrf_token(session: requests.Session, base: str) -> str:
    page = session.get(base + "/login").text
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


def login(base: str, name: str, password: str) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    r = s.post(base + "/login", data={"username": name, "password": password, "_xsrf": xsrf_token(s, base)}, allow_redirects=False)
    return s, r


def session_token(page: str) -> str:
    return re.search(r'"token":\s*"([^"]+)"', page).group(1)


async def _pull_document(base: str, cookies: dict[str, str], token: str, origin: str) -> str:
    "Open the page's websocket as a browser would and pull the session's document (JSON text)."
    headers = {"Origin": origin}
    if cookies: headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    conn = await websocket_connect(HTTPRequest(base.replace("http", "ws") + "/ws", headers=headers), subprotocols=["bokeh", token])

    async def message():
        header = json.loads(await conn.read_message())
        await conn.read_message()                     # metadata
        content = await conn.read_message()
        for _ in range(header.get("num_buffers", 0)): await conn.read_message()
        return header["msgtype"], content

    try:
        assert (await message())[0] == "ACK"
        for part in ({"msgid": "1", "msgtype": "PULL-DOC-REQ"}, {}, {}): await conn.write_message(json.dumps(part))
        kind, content = await message()
        assert kind == "PULL-DOC-REPLY"
        return content
    finally:
        conn.close()


def pull_document(base: str, session: requests.Session | None, origin: str | None = None) -> str:
    http = session or requests.Session()
    page = http.get(base + "/")
    assert page.status_code == 200 and page.url.rstrip("/") == base, page.url
    return asyncio.run(_pull_document(base, http.cookies.get_dict(), session_token(page.text), origin or base))


# --- logins -------------------------------------------------------------------------------------------------------------

def test_anonymous_visitor_is_sent_to_login(server):
    r = requests.get(server + "/", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("./login")
    page = requests.get(server + "/")
    assert page.url.startswith(server + "/login") and 'name="password"' in page.text


def test_login_with_right_password_shows_user_and_roles(server):
    s, r = login(server, ANN, ANN_PW)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    cookie = next(c for c in s.cookies if c.name == "user")
    assert cookie.has_nonstandard_attr("HttpOnly")
    doc = pull_document(server, s)
    assert f"user: {ANN}" in doc and "roles: approver, viewer" in doc


def test_viewer_reads_back_as_viewer_only(server):
    s, _ = login(server, BO, BO_PW)
    doc = pull_document(server, s)
    assert f"user: {BO}" in doc and "roles: viewer" in doc and "approver" not in doc


@pytest.mark.parametrize("name, password", [(ANN, BO_PW), (ANN, ""), ("nobody", ANN_PW), (ANN, ANN_PW + " ")])
def test_wrong_password_refused(server, name, password):
    s, r = login(server, name, password)
    assert r.status_code == 302 and r.headers["Location"] == "/login?error=1"
    assert "user" not in s.cookies.get_dict()
    assert "Wrong user name or password." in s.get(server + r.headers["Location"]).text
    assert s.get(server + "/").url.startswith(server + "/login")


def test_forged_login_cookie_refused(server):
    forged = create_signed_value("another-secret-another-secret-xx", "user", ANN).decode()
    r = requests.get(server + "/", cookies={"user": forged}, allow_redirects=False)
    assert r.status_code == 302 and "login" in r.headers["Location"]


def test_removed_user_loses_access(server, creds):
    add_user(creds, "c.temp", "temporary-pass-1", "approver")
    s, _ = login(server, "c.temp", "temporary-pass-1")
    assert s.get(server + "/", allow_redirects=False).status_code == 200
    remove_user(creds, "c.temp")
    assert s.get(server + "/", allow_redirects=False).status_code == 302


def test_credentials_file_broken_while_serving(server, creds):
    s, _ = login(server, ANN, ANN_PW)
    before = creds.read_bytes()
    try:
        creds.write_text('[users."a.hansen"]\nrole = "captain"\n')
        assert s.get(server + "/", allow_redirects=False).status_code == 302   # nobody gets in on a file nobody can check
        s2, r = login(server, ANN, ANN_PW)
        assert r.headers["Location"] == "/login?error=2"
        assert "credentials file is broken" in s2.get(server + r.headers["Location"]).text
    finally:
        creds.write_bytes(before)
    assert s.get(server + "/", allow_redirects=False).status_code == 200


def test_logout(server):
    s, _ = login(server, BO, BO_PW)
    assert s.get(server + "/", allow_redirects=False).status_code == 200
    page = s.get(server + "/logout")
    assert "logged out" in page.text
    assert s.get(server + "/", allow_redirects=False).status_code == 302


def test_login_page_echoes_nothing_and_redirects_only_home(server):
    page = requests.get(server + "/login", params={"error": "<script>alert(1)</script>", "next": "https://evil.example/"})
    assert "<script>alert" not in page.text
    s = requests.Session()
    s.get(server + "/login", params={"next": "https://evil.example/steal"})
    r = s.post(server + "/login", data={"username": ANN, "password": ANN_PW, "_xsrf": xsrf_token(s, server)}, allow_redirects=False)
    assert r.headers["Location"] == "/"


# --- XSRF ---------------------------------------------------------------------------------------------------------------

def test_post_without_xsrf_token_rejected(server):
    r = requests.post(server + "/login", data={"username": ANN, "password": ANN_PW}, allow_redirects=False)
    assert r.status_code == 403 and "user" not in r.cookies
    # a token from another browser's cookie does not match this one's
    s1, s2 = requests.Session(), requests.Session()
    other = xsrf_token(s2, server)
    s1.get(server + "/login")
    r = s1.post(server + "/login", data={"username": ANN, "password": ANN_PW, "_xsrf": other + "x"}, allow_redirects=False)
    assert r.status_code == 403


def test_login_form_carries_xsrf_token(server):
    s = requests.Session()
    page = s.get(server + "/login").text
    assert re.search(r'<input type="hidden" name="_xsrf" value="[^"]+"', page)
    assert "_xsrf" in s.cookies.get_dict()


# --- websocket origins --------------------------------------------------------------------------------------------------

def test_websocket_from_foreign_origin_rejected(server):
    s, _ = login(server, ANN, ANN_PW)
    port = server.rsplit(":", 1)[1]
    for origin in (f"http://evil.example:{port}", f"http://localhost.evil.example:{port}", "http://127.0.0.1:1", "null"):
        with pytest.raises(HTTPClientError) as e:
            pull_document(server, s, origin=origin)
        assert e.value.code == 403
    assert f"user: {ANN}" in pull_document(server, s, origin=server)   # the served origin itself is fine


def test_websocket_without_login_rejected(server):
    s, _ = login(server, ANN, ANN_PW)
    token = session_token(s.get(server + "/").text)
    with pytest.raises(HTTPClientError):
        asyncio.run(_pull_document(server, {}, token, server))


# --- offline ------------------------------------------------------------------------------------------------------------

def _local_links(page: str) -> list[str]:
    return [u for u in re.findall(r'<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["\']([^"\']+)', page) if not u.startswith("data:")]


def test_pages_need_no_network(server):
    assert external_resources(requests.get(server + "/login").text) == []
    s, _ = login(server, ANN, ANN_PW)
    page = s.get(server + "/").text
    assert external_resources(page) == [] and "cdn." not in page.lower()
    links = _local_links(page)
    assert any("bokeh" in u for u in links) and any("panel" in u for u in links), links
    for url in links:   # everything the page loads is served by the server itself
        assert s.get(f"{server}/{url.removeprefix('./').lstrip('/')}").status_code == 200, url
    # the document sent over the websocket points at the server's own stylesheets only
    doc = pull_document(server, s)
    assert {u.rstrip("/") for u in re.findall(r"(?:https?:)?//[^\s\"\\]+", doc)} <= {server}
    sheets = set(re.findall(r"static/[\w./-]+\.css", doc))
    assert sheets
    for sheet in sheets:
        css = s.get(f"{server}/{sheet}")
        assert css.status_code == 200 and external_resources(css.text) == [], sheet


# --- refusing to start --------------------------------------------------------------------------------------------------

def _app(root, identity):
    return identity


def test_missing_cookie_secret_refused_at_start(creds, monkeypatch, tmp_path):
    for var in ("SEATRIAL_COOKIE_SECRET", "PANEL_COOKIE_SECRET", "BOKEH_COOKIE_SECRET"): monkeypatch.delenv(var, raising=False)
    with pytest.raises(AccessError, match="needs a cookie secret") as e:
        serve_audit(tmp_path, port=free_port(), credentials=creds, app_factory=_app)
    assert "SEATRIAL_COOKIE_SECRET" in str(e.value) and "cookie_secret" in str(e.value)
    with pytest.raises(AccessError, match="at least 32"):
        serve_audit(tmp_path, port=free_port(), credentials=creds, cookie_secret="secret", app_factory=_app)
    monkeypatch.setenv("PANEL_COOKIE_SECRET", "x" * 40)
    with pytest.raises(AccessError, match="PANEL_COOKIE_SECRET is set to another"):
        serve_audit(tmp_path, port=free_port(), credentials=creds, cookie_secret=SECRET, app_factory=_app)


def test_missing_cookie_secret_refused_by_a_real_process(creds, tmp_path):
    port = free_port()
    run = subprocess.run([sys.executable, "-c", SERVER, str(tmp_path), str(port), str(creds), ""], env=clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "AccessError" in run.stderr and "SEATRIAL_COOKIE_SECRET" in run.stderr
    with socket.socket() as sock:   # nothing was left listening
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_other_misconfigurations_refused(creds, tmp_path, monkeypatch):
    with pytest.raises(AccessError, match="single-user and serves only this machine"):
        serve_audit(tmp_path, address="0.0.0.0", app_factory=_app)
    with pytest.raises(AccessError, match="every interface"):
        serve_audit(tmp_path, address="0.0.0.0", credentials=creds, cookie_secret=SECRET, app_factory=_app)
    with pytest.raises(AccessError, match="no wildcards"):
        serve_audit(tmp_path, credentials=creds, cookie_secret=SECRET, allow_websocket_origin="*", app_factory=_app)
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(AccessError, match="lists no users"):
        serve_audit(tmp_path, credentials=tmp_path / "empty.toml", cookie_secret=SECRET, app_factory=_app)
    (tmp_path / "broken.toml").write_text("[users.ann\n")
    with pytest.raises(AccessError, match=r"broken.toml: not valid TOML.*line 1"):
        serve_audit(tmp_path, credentials=tmp_path / "broken.toml", cookie_secret=SECRET, app_factory=_app)
    monkeypatch.setenv("BOKEH_ALLOW_WS_ORIGIN", "evil.example:80")
    with pytest.raises(AccessError, match="BOKEH_ALLOW_WS_ORIGIN"):
        serve_audit(tmp_path, credentials=creds, cookie_secret=SECRET, app_factory=_app)


def test_session_without_login_is_not_given_an_identity(creds, tmp_path):
    "A session served with credentials but without seatrial's login (a misconfiguration) gets no identity, not the local one."
    code = f"""
import panel as pn
from seatrial.access import AccessError, session_identity

def app():
    try: return pn.pane.Str("identity: " + session_identity({str(creds)!r}).name)
    except AccessError as e: return pn.pane.Str("refused: " + str(e))

pn.serve(app, address="127.0.0.1", port={{port}}, show=False)
"""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code.format(port=port)], env=clean_env(SEATRIAL_USER="c.berg"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                requests.get(base + "/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        base_origin = base.replace("127.0.0.1", "localhost")   # Bokeh's default allow-list is localhost:<port>
        page = requests.get(base + "/")
        doc = asyncio.run(_pull_document(base, page.cookies.get_dict(), session_token(page.text), base_origin))
        assert "refused: this audit session has no logged-in user" in doc and "identity: c.berg" not in doc
    finally:
        stop(proc)


# --- single-user mode ---------------------------------------------------------------------------------------------------

def test_single_user_mode_records_the_local_identity(local_server):
    r = requests.get(local_server + "/", allow_redirects=False)
    assert r.status_code == 200                                   # no login page
    doc = pull_document(local_server, None)
    assert "user: c.berg" in doc and "roles: approver, viewer" in doc


def test_single_user_mode_still_guards_origins_and_posts(local_server):
    port = local_server.rsplit(":", 1)[1]
    with pytest.raises(HTTPClientError) as e:
        pull_document(local_server, None, origin=f"http://evil.example:{port}")
    assert e.value.code == 403
    assert requests.post(local_server + "/", data={"x": "1"}).status_code == 403
