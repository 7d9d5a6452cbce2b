"""Faults and attacks on decisions: who may decide from the shell, a ledger cut at its end, changed evidence named,
and report paths that are unwritable, folders, or not there yet. On copies of the real two-version fleet project."""
from __future__ import annotations

import json
import re

import pytest
from conftest import mlflow_client, run_seatrial

from seatrial.ledger import Ledger
from seatrial.review import (
    ANCHOR_TAG, LedgerBrokenError, LoginRequiredError, collect_evidence, decide, ledger_path, verify,
)

APPROVER = {"viewer", "approver"}
PASSWORD = "north-sea-trial-2026"


def _last(root) -> dict:
    return Ledger(ledger_path(root)).entries()[-1]


def test_a_project_can_require_logins_for_decisions(fleet_project):
    root = fleet_project
    added = run_seatrial(root, "users", "add", "ana", "--role", "approver", "--credentials", "users.toml",
                         "--password-stdin", input=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    on = run_seatrial(root, "review", "require-login", "on", "--credentials", "users.toml")
    assert on.returncode == 0, on.stderr
    assert 'require_login = true\ncredentials = "users.toml"' in (root / "seatrial.toml").read_text()
    digest = collect_evidence(root, "fleet", "2").digest

    # the library refuses a decision without a checked login (the app and the shell both go through it), and records it
    with pytest.raises(LoginRequiredError, match="--password-stdin"):
        decide(root, "fleet", "2", "approve", "ana", APPROVER, "ok", digest, "")
    assert (_last(root)["outcome"], _last(root)["mode"]) == ("refused", "local")

    approve = ["review", "approve", "fleet", "2", "-m", "below baseline", "--evidence", digest, "--champion", "none",
               "--user", "ana", "--password-stdin"]
    wrong = run_seatrial(root, *approve, input="not-her-password\n")
    assert wrong.returncode == 1 and "do not match" in wrong.stderr and "Traceback" not in wrong.stderr
    done = run_seatrial(root, *approve, input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert (_last(root)["outcome"], _last(root)["mode"]) == ("approved", "login")

    off = run_seatrial(root, "review", "require-login", "off", "--user", "ana", "--password-stdin", input="guess\n")
    assert off.returncode == 1 and "do not match" in off.stderr and "require_login = true" in (root / "seatrial.toml").read_text()
    off = run_seatrial(root, "review", "require-login", "off", "--user", "ana", "--password-stdin", input=PASSWORD + "\n")
    assert off.returncode == 0 and "no longer need a login" in off.stdout, off.stderr

    (root / "seatrial.toml").write_text('[review]\nrequire_login = "yes"\n')
    bad = run_seatrial(root, "review", "reject", "fleet", "1", "-m", "no", "--evidence", "0" * 64, "--champion", "2")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "seatrial.toml: [review] require_login must be true or false" in bad.stderr, bad.stderr


def test_a_ledger_cut_at_its_end_is_caught_by_the_registry_anchor(fleet_project):
    root = fleet_project
    for version in ("1", "2"):
        decide(root, "fleet", version, "approve", "ana", APPROVER, "fits", collect_evidence(root, "fleet", version).digest)
    with pytest.raises(Exception, match="already decided"):   # a refusal: the last entry, recorded and anchored
        decide(root, "fleet", "2", "approve", "ben", APPROVER, "me too", collect_evidence(root, "fleet", "2").digest)
    led = Ledger(ledger_path(root))
    last = led.entries()[-1]
    led.path.write_text("".join(line + "\n" for line in led.lines()[:-1]))   # cut the last entry, and its head file
    led.head_path.unlink()
    assert led.verify() == []          # the chain alone cannot tell
    cut = (f"the ledger ends at entry 2 but the registry's anchor on model fleet (tag {ANCHOR_TAG}) says entry 3 "
           f"(hash {last['hash'][:12]}…) was written: entries were cut")
    assert verify(root) == [cut]
    anchor = json.loads(mlflow_client(root).get_registered_model("fleet").tags[ANCHOR_TAG])
    assert anchor == {"seq": 3, "hash": last["hash"]}
    shown = run_seatrial(root, "review", "verify")
    assert shown.returncode == 1 and f"BROKEN: {cut}" in shown.stdout, shown.stdout + shown.stderr
    with pytest.raises(LedgerBrokenError, match="entries were cut"):
        decide(root, "fleet", "1", "reject", "ana", APPROVER, "late", "0" * 64)


def test_review_show_names_what_changed_since_the_run(fleet_project):
    root = fleet_project
    ev = collect_evidence(root, "fleet", "2")
    pred, shap = ev.paths["predictions"], ev.paths["shap"]
    with open(pred, "ab") as f: f.write(b"\0")
    shown = run_seatrial(root, "review", "show", "fleet", "2")
    assert shown.returncode == 0, shown.stderr
    now = collect_evidence(root, "fleet", "2").files["predictions"]
    assert (f"  CHANGED predictions: {pred}: sha256 {now} now, {ev.files['predictions']} when the run recorded it"
            in shown.stdout), shown.stdout
    assert "1 evidence file(s) differ" in shown.stderr
    pred.unlink(); shap.unlink()
    gone = run_seatrial(root, "review", "show", "fleet", "2")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert f"'predictions' of stage 'evaluate', {pred} does not exist" in gone.stderr
    assert f"'shap' of stage 'explain', {shap} does not exist" in gone.stderr


def test_export_says_where_it_cannot_write_and_what_it_creates(fleet_project):
    root = fleet_project
    for target, what in (("/proc/x.html", "cannot write the report to /proc/x.html: no new file can be made in /proc"),
                         ("seatrial.toml/x.html", "is a file, not a folder")):
        (root / "seatrial.toml").write_text("")
        proc = run_seatrial(root, "review", "export", "fleet", "1", "-o", target)
        assert proc.returncode == 1 and what in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

    (root / "out").mkdir()
    into = run_seatrial(root, "review", "export", "fleet", "1", "-o", "out")
    assert into.returncode == 0, into.stderr
    assert "out is a folder: writing audit-fleet-v1.html into it" in into.stderr
    assert sorted(p.name for p in (root / "out").iterdir()) == ["audit-fleet-v1.html"]   # nothing half-written beside it

    made = run_seatrial(root, "review", "export", "fleet", "1", "-o", "new/dir/x.html")
    assert made.returncode == 0, made.stderr
    assert re.findall(r"created the folder (\S+)", made.stderr) == ["new", "new/dir"]
    assert (root / "new" / "dir" / "x.html").read_text().startswith("<!DOCTYPE html>")
