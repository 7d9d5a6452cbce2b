"""seatrial.api_tokens on the real model server: every route of `model_server.make_app` (fleet version 1 approved with the
real `seatrial review`) walked behind the TokenGate over real HTTP (uvicorn on 127.0.0.1 in a thread, httpx), with no
token, a wrong-scope token and the right one; and the real `seatrial tokens` commands in subprocesses."""
from __future__ import annotations

import math
import re
import threading
import time

import httpx
import pandas as pd
import pytest
from starlette.routing import Route
from conftest import approve_with_cli, run_seatrial
from loopback import free_port

from seatrial.access import add_user, read_users
from seatrial.api_tokens import (OPEN, ROUTE_ACCESS, SCOPES, RouteRuleError, TokenGate, UnprotectedBindError, add_token,
                                 check_routes, protect, read_tokens, remove_token, token_digest)
from seatrial.model_server import make_app


def _record(root) -> dict:
    "One raw telemetry row of the project's demo data, as a client sends it."
    t = pd.read_parquet(root / "data" / "demo" / "telemetry.parquet").iloc[:: 997].head(1)
    fields = ["time", "vessel_id", "lat", "lon", "stw_kn", "sog_kn", "heading_deg", "draught_m", "trim_m"]
    rec = t[fields].to_dict("records")[0]
    rec["time"] = rec["time"].isoformat().replace("+00:00", "Z")
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}


class _Uvicorn:
    "An ASGI app under uvicorn on 127.0.0.1, in a thread of this process."
    def __init__(self, app):
        import uvicorn
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


def _body(route: str, record: dict) -> dict | None:
    "A request body the route accepts, where it takes one."
    return {"/predict": record}.get(route)


def test_every_route_of_the_real_server_is_walked_behind_the_gate_and_start_is_refused_unprotected(fleet_project):
    root = fleet_project
    approve_with_cli(root, "1", "none")
    creds = root / "credentials.toml"
    add_user(creds, "a.hansen", "north-sea-2026", "approver")   # the audit app's users share the file
    tokens = {s: add_token(creds, f"only-{s}", [s])[1] for s in SCOPES}
    counted = []
    app = make_app(root, "fleet")
    assert protect(app, "127.0.0.1") is app   # no tokens, loopback: served as it is
    with pytest.raises(UnprotectedBindError, match=re.escape("--address 0.0.0.0 is not a loopback address")):
        protect(app, "0.0.0.0")
    users_only = root / "users-only.toml"
    add_user(users_only, "b.olsen", "baltic-sea-2026", "viewer")   # a credentials file with users but no token
    with pytest.raises(UnprotectedBindError, match="no API token is configured"):
        protect(app, "10.1.2.3", users_only)
    gated = protect(app, "0.0.0.0", creds, observe=lambda route, status, s: counted.append((route, status)))
    assert isinstance(gated, TokenGate)
    rules = check_routes(app)
    record = _record(root)
    walked = set()
    with _Uvicorn(gated) as url, httpx.Client(base_url=url, timeout=30) as client:
        for route in app.routes:
            methods = sorted(set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"})
            rule = rules[route.path]
            for method in methods:
                body = _body(route.path, record)
                ask = lambda token=None, body=body, method=method, route=route: client.request(   # noqa: E731
                    method, route.path, json=body, headers={"Authorization": f"Bearer {token}"} if token else {})
                if rule == OPEN:
                    r = ask()
                    assert r.status_code in (200, 503) and "www-authenticate" not in r.headers, (route.path, r.text)
                    walked.add(route.path)
                    continue
                none = ask()
                assert none.status_code == 401, (route.path, none.status_code, none.text)
                assert none.headers["www-authenticate"] == 'Bearer realm="seatrial"'
                assert none.json()["scope"] == rule and none.json()["send"] == "Authorization: Bearer <token>"
                forged = ask("st_" + "A" * 43)
                assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]
                for other in (s for s in SCOPES if s != rule):
                    wrong = ask(tokens[other])
                    assert wrong.status_code == 403, (route.path, other, wrong.text)
                    assert f"needs scope '{rule}'" in wrong.json()["error"] and f"token 'only-{other}'" in wrong.json()["error"]
                right = ask(tokens[rule])
                if route.path in ("/predict", "/model", "/metrics", "/admin/reload", "/openapi.json"):
                    assert 200 <= right.status_code < 300, (route.path, right.status_code, right.text)
                else:   # a route whose request body this walk does not know: the gate let it through to the app
                    assert right.status_code not in (401, 403), (route.path, right.text)
                walked.add(route.path)
        predicted = client.post("/predict", json=record, headers={"Authorization": f"Bearer {tokens['predict']}"}).json()
        assert (predicted["model"], predicted["version"], predicted["errors"]) == ("fleet", "1", {})
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {tokens['metrics']}"}).text
        assert re.search(r'seatrial_requests_total\{route="/predict",status="200"\} [1-9]', metrics), metrics[:2000]
        assert client.get("/no/such/route").status_code == 403   # no rule: refused before the app is asked

        # a token removed while the server runs is refused within a second; the others keep working
        remove_token(creds, "only-predict")
        end = time.monotonic() + 10
        while client.post("/predict", json=record, headers={"Authorization": f"Bearer {tokens['predict']}"}).status_code != 401:
            assert time.monotonic() < end, "a removed token was still accepted after 10 s"
            time.sleep(0.2)
        assert client.get("/model", headers={"Authorization": f"Bearer {tokens['admin']}"}).status_code == 403
    assert walked == {r.path for r in app.routes} and {"/predict", "/model", "/health", "/ready", "/metrics",
                                                          "/admin/reload"} <= walked
    assert ("/predict", 401) in counted and ("/admin/reload", 403) in counted and ("(no rule)", 403) in counted
    assert list(read_users(creds)) == ["a.hansen"]

    # a route added without a rule stops the server before it listens
    app.router.routes.append(Route("/debug", lambda request: None))
    with pytest.raises(RouteRuleError, match="route /debug has no access rule"):
        protect(app, "127.0.0.1")
    assert set(ROUTE_ACCESS.values()) <= {OPEN, *SCOPES}


def test_token_commands_print_the_token_once_and_never_list_a_digest(tmp_path):
    creds = tmp_path / "conf" / "credentials.toml"
    added = run_seatrial(tmp_path, "tokens", "add", "etl", "--scope", "predict", "--scope", "feedback",
                         "--credentials", str(creds))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert re.fullmatch(r"st_[A-Za-z0-9_-]{43}", token) and added.stdout == token + "\n"
    assert "only time the token is shown" in added.stderr and token not in added.stderr
    stored = creds.read_text()
    assert token not in stored and f'hash = "sha256${token_digest(token)}"' in stored
    assert creds.stat().st_mode & 0o777 == 0o600
    assert read_tokens(creds)["etl"].scopes == {"predict", "feedback"}

    users = run_seatrial(tmp_path, "users", "add", "ana", "--role", "approver", "--credentials", str(creds),
                         "--password-stdin", input="north-sea-trial-2026\n")
    assert users.returncode == 0, users.stderr
    run_seatrial(tmp_path, "tokens", "add", "prometheus", "--scope", "metrics", "--credentials", str(creds))
    listed = run_seatrial(tmp_path, "tokens", "list", "--credentials", str(creds))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["etl", "predict,feedback"], ["prometheus", "metrics"]]
    assert all(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", line) for line in lines)
    assert token not in listed.stdout and token_digest(token) not in listed.stdout and "sha256" not in listed.stdout

    again = run_seatrial(tmp_path, "tokens", "add", "etl", "--scope", "admin", "--credentials", str(creds))
    assert again.returncode == 1 and "a token named 'etl' exists" in again.stderr and again.stdout == ""
    unknown = run_seatrial(tmp_path, "tokens", "add", "x", "--scope", "root", "--credentials", str(creds))
    assert unknown.returncode == 1 and "scope 'root' is unknown" in unknown.stderr and "Traceback" not in unknown.stderr

    removed = run_seatrial(tmp_path, "tokens", "remove", "etl", "--credentials", str(creds))
    assert removed.returncode == 0, removed.stderr
    assert list(read_tokens(creds)) == ["prometheus"] and list(read_users(creds)) == ["ana"]
    gone = run_seatrial(tmp_path, "tokens", "remove", "etl", "--credentials", str(creds))
    assert gone.returncode == 1 and "there is no token 'etl'; tokens: prometheus" in gone.stderr
    nowhere = run_seatrial(tmp_path, "tokens", "list")
    assert nowhere.returncode == 1 and "--credentials FILE" in nowhere.stderr
