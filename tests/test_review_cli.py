"""`seatrial review | users | audit` through the real command, on a real two-version fleet project."""
from __future__ import annotations

import json
import re

from conftest import mlflow_client, run_seatrial

PASSWORD = {"ana": "north-sea-trial-2026", "vic": "baltic-watch-2026"}


def _evidence(root, version: str) -> str:
    "The evidence digest `review show` prints: what a reviewer looked at."
    shown = run_seatrial(root, "review", "show", "fleet", version)
    assert shown.returncode == 0, shown.stderr
    return re.search(r"^evidence ([0-9a-f]{64})$", shown.stdout, re.M).group(1)


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
    assert re.search(r"fleet\s+2 .*3 of 3 passed", listed.stdout) and re.search(r"fleet\s+1 ", listed.stdout)

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
    empty = run_seatrial(root, "review", "reject", "fleet", "1", "-m", "  ", "--evidence", _evidence(root, "1"),
                         "--champion", "2")
    assert empty.returncode == 1 and "comment is empty" in empty.stderr
    listed = run_seatrial(root, "review", "list")
    assert re.search(r"fleet\s+1 .*vs champion 2 on the champion's own test rows", listed.stdout), listed.stdout
    shown = run_seatrial(root, "review", "show", "fleet", "1")
    assert re.search(r"champion\s+2 .*\(on the champion's own test rows\)", shown.stdout), shown.stdout
    moved = run_seatrial(root, "review", "reject", "fleet", "1", "-m", "worse", "--evidence", _evidence(root, "1"),
                         "--champion", "none")   # looked at before version 2 became champion
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
    assert "&lt;b&gt;not&lt;/b&gt; yet" in html    # the reviewer's comment, inert
