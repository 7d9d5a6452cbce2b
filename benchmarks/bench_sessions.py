"""A team at once: reviewers opening the audit app at the same moment, over real HTTP and websockets.

What one reviewer's browser does, done by N clients at once against a server on 127.0.0.1:
  log in (before the clock starts: POST /login with the XSRF token, as the login form does), then, timed from the
  same instant for all N: GET the app page, open its websocket (Bokeh's protocol: ACK, PULL-DOC-REQ), receive the
  session's document, announce `document_ready` (as BokehJS does once it has rendered the document; Panel runs the
  session's on-load work then), and receive every patch the server sends until the page is complete: the document
  holds the Review tab (the map and the overview). A page that is only HTML is not a first page: the time is that of
  the message that completed the document. The server may send what is below the first screen (the residual
  histogram and the checks) after it: the time the whole tab is there is reported apart. Messages that follow within
  `--quiet` seconds (Panel's busy indicator, which every open session of a process follows) are read too, and the
  last one's time is reported apart.

Servers compared in one run, each a fresh process on the same project, each given a first session before timing (it
pays one-time costs; that first page is shown apart):
  - naive: Panel as its documentation serves an app, `pn.serve(lambda: AuditApp(root=...))`: one process, the page
    built when it is requested, no login (less work than ours: no login check on each request).
  - before (with --before REV): `seatrial audit`'s serve_audit as it was at git revision REV (extracted with
    `git archive`, nothing in the working tree changes), with logins.
  - ours: serve_audit as it is now, with logins, its default processes; and `--processes 1 2 ...` adds one row each.
For each, --sessions (default 1 5 20) reviewers at once, --repeat rounds each; a round's sessions are closed before the
next. Figures: median, p90 and max of the first-page times of all rounds, the HTML page alone (median), the server's
CPU seconds per session (user + system of the server and its workers over a round, divided by its sessions: what a
shared machine does not blur), and the one-minute load average before each round (read the times with it).

The project: --root (a project with a candidate awaiting review), else the demo made once in
benchmarks/out/sessions/ by `seatrial demo --rows 200000` (about three minutes).

Usage: python benchmarks/bench_sessions.py [--root PROJECT] [--sessions 1 5 20] [--repeat 2] [--before REV]
       [--modes naive before ours] [--processes 1 2] [--quiet 1.0] [--json out.json]
Timings depend on the machine and its load; they never gate tests.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / "out" / "sessions"
SEATRIAL = Path(sys.executable).parent / "seatrial"
SECRET = "bench-sessions-cookie-secret-0123456789abcdef"
PASSWORD = "reviewer-password-2026"
MARKERS = ("map-view", "overview-view")   # css classes of the Review tab's two columns: the first page is there
WHOLE = "Residual distribution"           # the heading below the regime table: with it the whole Review tab is there

SERVER = r"""
import os, sys
from pathlib import Path
mode, root, port, creds, extra = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if mode == "naive":
    import holoviews as hv
    import panel as pn
    from seatrial.audit.app import AuditApp
    pn.extension("tabulator")
    hv.extension("bokeh", logo=False)
    pn.serve(lambda: AuditApp(root=root), port=port, address="127.0.0.1", websocket_origin=[f"127.0.0.1:{port}"],
             show=False, title="naive")
else:
    from seatrial.audit.serve import serve_audit
    kw = {"processes": int(extra)} if extra else {}
    serve_audit(root, port=port, credentials=creds, cookie_secret=os.environ["BENCH_SECRET"], **kw)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cpu(pgid: int) -> float:
    "CPU seconds (user + system) used so far by every process of a process group: the server and its workers."
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try: fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(fields[2]) == pgid: total += int(fields[11]) + int(fields[12])   # pgrp; utime, stime
    return total / tick


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def project(root: str | None) -> Path:
    if root: return Path(root).resolve()
    root = WORK / "project"
    if not (root / "mlflow.db").exists():
        root.mkdir(parents=True, exist_ok=True)
        print(f"making the demo project in {root} (seatrial demo --rows 200000) ...", flush=True)
        subprocess.run([str(SEATRIAL), "--root", str(root), "demo", "--rows", "200000", "-q"], check=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    return root


def credentials(n: int) -> tuple[Path, list[str]]:
    "A credentials file with n reviewers (approvers), made once."
    from seatrial.access import add_user, read_users
    path = WORK / "users.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"reviewer{i:02d}" for i in range(n)]
    have = read_users(path) if path.exists() else {}
    for name in names:
        if name not in have: add_user(path, name, PASSWORD, "approver")
    return path, names


def old_source(rev: str) -> Path:
    "src/ of a git revision, extracted to a temporary folder."
    out = Path(tempfile.mkdtemp(prefix="seatrial-before-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar: tar.extractall(out, filter="data")
    return out / "src"


class Server:
    def __init__(self, mode: str, root: Path, creds: Path, processes: int | None = None, src: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(WORK / f"server-{mode}-{self.port}.log", "w")
        env = {**os.environ, "BENCH_SECRET": SECRET, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
        for var in ("SEATRIAL_COOKIE_SECRET", "PANEL_COOKIE_SECRET", "BOKEH_COOKIE_SECRET", "BOKEH_ALLOW_WS_ORIGIN"):
            env.pop(var, None)
        if src is not None: env["PYTHONPATH"] = str(src)
        self.login = mode != "naive"
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, "naive" if mode == "naive" else "serve", str(root),
                                      str(self.port), str(creds), "" if processes is None else str(processes)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {mode} server exited; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline: raise RuntimeError("the server did not listen within 600 s") from None
                time.sleep(0.5)

    def stop(self) -> None:
        import signal
        try: os.killpg(self.proc.pid, signal.SIGTERM)   # its own session: the server and any worker processes it forked
        except ProcessLookupError: pass
        try: self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


# --- one reviewer ------------------------------------------------------------------------------------------------------

def _cookies(response, jar: dict) -> None:
    for raw in response.headers.get_list("Set-Cookie"):
        name, _, rest = raw.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]


async def log_in(base: str, name: str) -> dict:
    "Log in as the login form does; the cookies of the logged-in browser."
    from tornado.httpclient import AsyncHTTPClient
    from urllib.parse import urlencode
    http, jar = AsyncHTTPClient(), {}
    page = await http.fetch(base + "/login", raise_error=False)
    _cookies(page, jar)
    token = re.search(r'name="_xsrf" value="([^"]+)"', page.body.decode()).group(1)
    r = await http.fetch(base + "/login", method="POST", follow_redirects=False, raise_error=False,
                         headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
                         body=urlencode({"username": name, "password": PASSWORD, "_xsrf": token}))
    _cookies(r, jar)
    if r.code != 302 or "user" not in jar: raise RuntimeError(f"login of {name} failed: {r.code}")
    return jar


async def _message(conn) -> tuple[str, str]:
    "One Bokeh protocol message: (msgtype, content text); buffers (header + payload frames) are read and dropped."
    header = await conn.read_message()
    if header is None: raise RuntimeError("the server closed the websocket")
    header = json.loads(header)
    await conn.read_message()                                        # metadata
    content = await conn.read_message()
    for _ in range(2 * header.get("num_buffers", 0)): await conn.read_message()
    return header["msgtype"], content


def _send(conn, msgtype: str, content: dict, msgid: str):
    return [conn.write_message(json.dumps(part)) for part in ({"msgid": msgid, "msgtype": msgtype}, {}, content)]


READY = {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event",
                     "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map", "entries": []}}}]}


async def open_page(base: str, jar: dict, start: float, quiet: float) -> dict:
    "From `start`: the page, its websocket, the document and its patches until complete; seconds since `start`."
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    page = await AsyncHTTPClient().fetch(base + "/", headers={"Cookie": cookie} if cookie else {}, follow_redirects=False,
                                         connect_timeout=600, request_timeout=600)
    html = time.perf_counter() - start
    token = re.search(r'"token":\s*"([^"]+)"', page.body.decode()).group(1)
    headers = {"Origin": base} | ({"Cookie": cookie} if cookie else {})
    conn = await websocket_connect(HTTPRequest(base.replace("http", "ws") + "/ws", headers=headers, request_timeout=600),
                                   subprotocols=["bokeh", token], max_message_size=1 << 30)
    try:
        kind, _ = await _message(conn)
        assert kind == "ACK", kind
        for f in _send(conn, "PULL-DOC-REQ", {}, "1"): await f
        kind, doc = await _message(conn)
        assert kind == "PULL-DOC-REPLY", kind
        pulled = last = time.perf_counter() - start
        for f in _send(conn, "PATCH-DOC", READY, "2"): await f
        seen = {m for m in MARKERS if m in doc}
        complete = pulled if seen == set(MARKERS) else None
        whole = complete if complete is not None and WHOLE in doc else None
        while True:
            try: kind, content = await asyncio.wait_for(_message(conn), quiet if whole is not None else 600)
            except TimeoutError: break
            last = time.perf_counter() - start
            seen |= {m for m in MARKERS if m in content}
            if complete is None and seen == set(MARKERS): complete = last
            if whole is None and complete is not None and (WHOLE in content or WHOLE in doc): whole = last
        return {"html": html, "document": pulled, "complete": complete, "whole tab": whole, "last message": last}
    finally:
        conn.close()


async def round_of(base: str, jars: list[dict], quiet: float) -> list[dict]:
    from tornado.httpclient import AsyncHTTPClient
    AsyncHTTPClient.configure(None, max_clients=max(10, len(jars)))   # every reviewer's page at once, none queued here
    start = time.perf_counter()
    return await asyncio.gather(*(open_page(base, jar, start, quiet) for jar in jars))


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def measure(server: Server, names: list[str], sessions: list[int], repeat: int, quiet: float) -> dict:
    async def logins(n):
        return [await log_in(server.base, name) for name in names[:n]] if server.login else [{} for _ in range(n)]
    first = asyncio.run(round_of(server.base, asyncio.run(logins(1)), quiet))[0]
    out = {"first session": first, "rounds": {}}
    for n in sessions:
        times, whole, html, last, loads, cpu = [], [], [], [], [], []
        for _ in range(repeat):
            jars = asyncio.run(logins(n))
            time.sleep(2.0)   # let the logins' work settle
            loads.append(load())
            cpu0 = server_cpu(server.proc.pid)
            res = asyncio.run(round_of(server.base, jars, quiet))
            cpu.append((server_cpu(server.proc.pid) - cpu0) / n)
            times += [r["complete"] for r in res]
            whole += [r["whole tab"] for r in res]
            html += [r["html"] for r in res]
            last += [r["last message"] for r in res]
        out["rounds"][n] = {"median": statistics.median(times), "p90": p90(times), "max": max(times),
                            "html median": statistics.median(html), "whole tab median": statistics.median(whole),
                            "whole tab p90": p90(whole),
                            "last message median": statistics.median(last), "load before": loads, "times": times,
                            "server cpu per session": statistics.median(cpu)}
        print(f"    {n:>3} at once: median {out['rounds'][n]['median']:.2f} s, p90 {out['rounds'][n]['p90']:.2f} s, "
              f"max {max(times):.2f} s; whole tab median {statistics.median(whole):.2f} s, p90 {p90(whole):.2f} s; server CPU {statistics.median(cpu):.2f} s per session; HTML {statistics.median(html):.2f} s, last message {statistics.median(last):.2f} s (median) (load before: {'; '.join(loads)})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["naive", "before", "ours"], choices=["naive", "before", "ours"])
    ap.add_argument("--before", help="git revision whose serve_audit is 'before' (skipped without it)")
    ap.add_argument("--processes", type=int, nargs="*", default=[], help="also run ours with these process counts")
    ap.add_argument("--quiet", type=float, default=1.0, help="seconds without a message that end a complete page")
    ap.add_argument("--json")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    root = project(args.root)
    creds, names = credentials(max(args.sessions))
    print(f"project {root}; {os.cpu_count()} cores; load {load()}", flush=True)
    runs: list[tuple[str, dict]] = []
    if "naive" in args.modes: runs.append(("naive Panel (pn.serve, 1 process, no login)", {"mode": "naive"}))
    if "before" in args.modes and args.before:
        runs.append((f"before ({args.before[:10]})", {"mode": "serve", "src": old_source(args.before)}))
    if "ours" in args.modes:
        runs.append(("ours (serve_audit defaults)", {"mode": "serve"}))
        runs += [(f"ours, {p} process{'es' if p > 1 else ''}", {"mode": "serve", "processes": p}) for p in args.processes]
    results = {}
    for label, opts in runs:
        print(f"{label}: starting (load {load()})", flush=True)
        t = time.perf_counter()
        server = Server(opts["mode"], root, creds, opts.get("processes"), opts.get("src"))
        try:
            print(f"  listening after {time.perf_counter() - t:.1f} s", flush=True)
            results[label] = measure(server, names, args.sessions, args.repeat, args.quiet)
            print(f"  first session after start: {results[label]['first session']['complete']:.2f} s", flush=True)
        finally:
            server.stop()
    print(f"\nReviewers opening the app at once: first page complete (s), median / p90 / max; load after: {load()}")
    print(f"| server | {' | '.join(f'{n} at once' for n in args.sessions)} | whole tab, {max(args.sessions)} at once (median / p90) "
          f"| HTML page alone, {max(args.sessions)} at once (median) | server CPU per session ({' / '.join(map(str, args.sessions))}) |")
    print(f"|---|{'---:|' * (len(args.sessions) + 3)}")
    for label, r in results.items():
        cells = [f"{r['rounds'][n]['median']:.2f} / {r['rounds'][n]['p90']:.2f} / {r['rounds'][n]['max']:.2f}" for n in args.sessions]
        cpu = " / ".join(f"{r['rounds'][n]['server cpu per session']:.2f}" for n in args.sessions)
        top = r["rounds"][max(args.sessions)]
        print(f"| {label} | {' | '.join(cells)} | {top['whole tab median']:.2f} / {top['whole tab p90']:.2f} | "
              f"{top['html median']:.2f} | {cpu} s |")
    labels = list(results)
    if len(labels) > 1:
        ours = next((k for k in labels if k.startswith("ours (")), labels[-1])
        for other in labels:
            if other == ours: continue
            ratios = [f"{n} at once: p90 {results[other]['rounds'][n]['p90'] / results[ours]['rounds'][n]['p90']:.1f}x" for n in args.sessions]
            print(f"{other} / {ours}: {', '.join(ratios)}")
    if args.json: Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
