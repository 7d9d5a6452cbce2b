"""The model server's metrics as a real Prometheus sees them: Debian's `prometheus` binary (not its system service) run with a
throw-away config and database, scraping `seatrial serve` on 127.0.0.1 every second; the series read back through its
HTTP query API. And the shipped Grafana dashboard names only metrics the running server exposes."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings

import httpx
import pytest
from conftest import REPO, SEATRIAL, approve_with_cli, telemetry_records
from loopback import free_port

DASHBOARD = REPO / "docs" / "grafana" / "seatrial-serving.json"


def prometheus_or_skip() -> str:
    "The prometheus binary; a loud skip on a laptop without it, a failure under CI=true (a metrics test not run proves nothing)."
    found = shutil.which("prometheus")
    if found: return found
    msg = "PROMETHEUS TEST NOT RUN: no prometheus command (apt-get install -y prometheus)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " - under CI a missing prometheus is a failure")
    warnings.warn(msg, stacklevel=2)
    pytest.skip(msg)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait()


def _wait(proc: subprocess.Popen, url: str, log, what: str, limit_s: float = 90) -> None:
    "Poll `url` until it answers 200; the process's output is shown when it dies or never gets there."
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"{what} stopped: {log.read()[-5000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200: return
        except httpx.TransportError: pass
        time.sleep(0.2)
    log.seek(0)
    raise AssertionError(f"{what} was not ready within {limit_s} s: {log.read()[-5000:]}")


@pytest.fixture(scope="module")
def served(fleet_base, tmp_path_factory):
    "`seatrial serve` on a copy of the fleet project with version 1 approved (real CLI); yields its URL."
    root = tmp_path_factory.mktemp("prom") / "project"
    shutil.copytree(fleet_base, root)
    approve_with_cli(root, "1", "none")
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([str(SEATRIAL), "--root", str(root), "serve", "--port", str(port)], cwd=root, env=_env(),
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(proc, url + "/health", log, "seatrial serve")
            yield root, url
        finally:
            _stop(proc)


def _until(read, want, limit_s: float = 30):
    "`read()` once it equals `want` (Prometheus scrapes every second), or the last value read after `limit_s`."
    end = time.monotonic() + limit_s
    while (got := read()) != want and time.monotonic() < end: time.sleep(0.5)
    return got


class Prom:
    "Prometheus's HTTP query API."
    def __init__(self, url: str): self.url = url

    def query(self, q: str) -> list[dict]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": q}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{q}: {r.text}"
        return body["data"]["result"]

    def value(self, q: str) -> float | None:
        "The value of a query that gives one series (None when it gives none)."
        res = self.query(q)
        assert len(res) <= 1, f"{q} gave {len(res)} series: {res}"
        return float(res[0]["value"][1]) if res else None

    def by(self, q: str, *labels: str) -> dict:
        "{label values: value} of a query's series."
        return {tuple(s["metric"].get(k) for k in labels): float(s["value"][1]) for s in self.query(q)}


def test_prometheus_scrapes_what_the_server_answered(served, tmp_path):
    binary = prometheus_or_skip()
    root, url = served
    host_port = url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: seatrial\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{host_port}']\n")
    pport = free_port()
    prom_url = f"http://127.0.0.1:{pport}"
    with open(tmp_path / "prometheus.log", "w+") as log:
        prom = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}",
                                 "--storage.tsdb.retention.time=1h"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            _wait(prom, prom_url + "/-/ready", log, "prometheus", 60)
            p = Prom(prom_url)

            # what is sent to /predict, counted here by status: 200s (one record, batches, a batch with a bad row) and refusals
            records = telemetry_records(root, 20)
            sent, rows = {"200": 0, "422": 0, "415": 0}, []
            with httpx.Client(base_url=url, timeout=30) as c:
                def send(status: str, n_rows: int | None, **kw) -> None:
                    r = c.post("/predict", **kw)
                    assert r.status_code == int(status), r.text
                    sent[status] += 1
                    if n_rows is not None: rows.append(n_rows)   # a body that parsed: its rows are counted
                for rec in records[:7]: send("200", 1, json=rec)
                send("200", 5, json=records[7:12])
                send("200", 8, json=records[12:20])
                bad = [dict(r) for r in records[:4]]
                bad[2]["lat"] = 123.0
                send("200", 4, json=bad)   # answered for rows 0, 1, 3; row 2 named
                answered = 7 + 5 + 8 + 3
                send("422", 1, json={**records[0], "lat": 123.0})
                send("422", 1, json={**records[0], "vessel_id": "NO-SUCH-SHIP"})
                send("422", None, content=b'{"time": ', headers={"content-type": "application/json"})
                send("415", None, content=b"time,lat\n", headers={"content-type": "text/csv"})
                send("415", None, content=b"time,lat\n", headers={"content-type": "text/csv"})

            # Prometheus has the last of it once a scrape after the last request is in: wait for the counts to match
            want = {("/predict", s): float(n) for s, n in sent.items()}
            got = _until(lambda: p.by('seatrial_requests_total{job="seatrial",route="/predict"}', "route", "status"), want)
            assert got == want, f"Prometheus has {got}, the test sent {want}"

            assert p.value('up{job="seatrial"}') == 1.0
            # Prometheus's own scrapes are requests too, counted on /metrics once answered: a later scrape reports them
            assert _until(lambda: p.value('seatrial_requests_total{route="/metrics",status="200"}') is not None, True)
            # the latency histogram: one observation per /predict request, buckets that add up, a finite p99
            n_predict = float(sum(sent.values()))
            assert p.value('seatrial_request_seconds_count{route="/predict"}') == n_predict
            assert p.value('seatrial_request_seconds_bucket{route="/predict",le="+Inf"}') == n_predict
            assert len(p.query('seatrial_request_seconds_bucket{route="/predict"}')) >= 10
            p99 = p.value('histogram_quantile(0.99, sum by (le) (seatrial_request_seconds_bucket{route="/predict"}))')
            assert p99 is not None and 0 < p99 < math.inf
            assert 0 < p.value('seatrial_request_seconds_sum{route="/predict"}') < 60
            # rows per request: each request whose body parsed, with its rows
            assert p.value("seatrial_rows_per_request_count") == float(len(rows))
            assert p.value("seatrial_rows_per_request_sum") == float(sum(rows))
            assert p.value('seatrial_rows_per_request_bucket{le="1.0"}') == float(rows.count(1))
            assert p.value('seatrial_rows_per_request_bucket{le="5.0"}') == float(sum(r <= 5 for r in rows))
            # the version served, and no swap
            info = p.query('seatrial_model_info{model="fleet"} == 1')
            assert [(s["metric"]["version"], s["metric"]["reviewed"], s["metric"]["role"]) for s in info] == [
                ("1", "true", "champion")], info
            assert p.value('seatrial_model_info{version="1"}') == 1.0
            assert p.value("seatrial_swaps_total") == 0.0
            assert p.value("seatrial_refused_swaps_total") == 0.0

            # the predictions histogram: one value per row answered, all by the champion, none of them negative fuel
            assert p.value('seatrial_predictions_count{role="champion"}') == float(answered)
            assert p.value('seatrial_predictions_bucket{role="champion",le="0.0"}') == 0.0
            assert p.value('seatrial_predictions_sum{role="champion"}') > 0
            assert set(p.by("seatrial_predictions_count", "role")) == {("champion",)}
            # the prediction log: every answered row written (on disk within a second, then scraped), none queued,
            # failed or dropped
            assert _until(lambda: p.value("seatrial_log_rows_written_total"), answered) == answered
            assert p.value("seatrial_log_queue_rows") == 0.0
            assert p.value("seatrial_log_write_errors_total") == 0.0
            assert p.value("seatrial_log_dropped_rows_total") == 0.0

            # every query of the Grafana dashboard is PromQL this Prometheus accepts
            for e in _dashboard_queries():
                p.query(e.replace("$__rate_interval", "1m").replace("$instance", ".*"))
        finally:
            _stop(prom)


def _dashboard_queries() -> list[str]:
    "The PromQL of every panel of the Grafana dashboard."
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", []) if "expr" in t]
    assert exprs, "the dashboard has no queries"
    return exprs


def _dashboard_metrics() -> set[str]:
    "Every seatrial_* metric name in the dashboard's queries and variables."
    board = json.loads(DASHBOARD.read_text())
    texts = _dashboard_queries() + [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return {m for e in texts for m in re.findall(r"\bseatrial_[a-z0-9_]+", e)}


def _exposed(text: str) -> set[str]:
    "Every sample name the exposition has or will have: a labelled series not yet observed still has its family declared."
    from prometheus_client.parser import text_string_to_metric_families
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    names = set()
    for fam in text_string_to_metric_families(text):
        names |= {s.name for s in fam.samples}
        names |= {fam.name + suffix for suffix in suffixes.get(fam.type, ("",))}
    return names


def test_the_dashboard_names_only_metrics_the_server_exposes(served):
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 36 and board["title"] and board["uid"]
    ds = [v for v in board["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert ds and ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus"
    for panel in board["panels"]:
        if panel.get("type") == "row": continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} says nothing about what it shows"
    text = httpx.get(served[1] + "/metrics", timeout=30).text   # no /predict here: the other test counts every one
    missing = sorted(_dashboard_metrics() - _exposed(text))
    assert not missing, f"the dashboard queries metrics the server does not expose: {missing}"
