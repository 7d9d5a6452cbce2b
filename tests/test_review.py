"""Review decisions on real pipeline runs: evidence, refusals, the ledger, rollback, and two reviewers at the same moment.

Two real `seatrial run`s on R's quakes data register versions 1 and 2 (the second with another training seed; its
ingest and features stages are reused from the first run). Each test works on its own copy of that project, so the
MLflow store (SQLite), the runs and the ledger start pristine every time.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import mlflow_client, run_seatrial, write_quakes

from seatrial.core import hash_json, read_json
from seatrial.ledger import Ledger
from seatrial.review import (
    AlreadyDecidedError, ChampionMovedError, LedgerBrokenError, MissingCommentError, NotAllowedError, ReviewError, RollbackError,
    StaleEvidenceError, UnknownActionError, UnknownVersionError, candidates, champion, champion_at, collect_evidence,
    compare_metrics, decide, describe, history, ledger_path, rollback, verify,
)

MODEL = "quakes"
APPROVER, VIEWER = {"viewer", "approver"}, {"viewer"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    "A project with two registered versions awaiting review (two real pipeline runs)."
    root = tmp_path_factory.mktemp("review") / "project"
    config = write_quakes(root / "data")
    for extra in ([], ["-p", "train.seed=1"]):
        proc = run_seatrial(root, "run", "--config", str(config), "-q", *extra)
        assert proc.returncode == 0, proc.stderr
    versions = {str(mv.version) for mv in mlflow_client(root).search_model_versions(f"name = '{MODEL}'")}
    assert versions == {"1", "2"}
    return root


@pytest.fixture
def proj(pristine, tmp_path, monkeypatch) -> Path:
    "A private copy of the project."
    monkeypatch.delenv("SEATRIAL_LEDGER", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "project"
    shutil.copytree(pristine, root)
    return root


def run_of(root: Path, version: str) -> str:
    return mlflow_client(root).get_model_version(MODEL, version).tags["seatrial.run"]


def approve(root: Path, version: str, who: str = "ana", comment: str = "fits the sea trial") -> dict:
    ev = collect_evidence(root, MODEL, version)
    return decide(root, MODEL, version, "approve", who, APPROVER, comment, ev.digest)


def ledger_lines(root: Path) -> list[str]:
    return Ledger(ledger_path(root)).lines()


# --- evidence and the queue -------------------------------------------------------------------------------------

def test_evidence_pins_every_file_hashed_now(proj):
    ev = collect_evidence(proj, MODEL, "2")
    run2 = run_of(proj, "2")
    assert (ev.model, ev.version, ev.run) == (MODEL, "2", run2)
    tags = mlflow_client(proj).get_model_version(MODEL, "2").tags
    assert ev.mlflow_run_id == tags["seatrial.pipeline_run_id"] and ev.data_digest == tags["seatrial.data_digest"]
    for label in ("model", "predictions", "metrics", "checks", "shap", "importance", "notebook:01_ingest",
                  "notebook:03_train", "notebook:05_explain", "manifest:features"):
        assert len(ev.files[label]) == 64, label
    stages = read_json(proj / "runs" / run2 / "run.json")["stages"]
    for i, s in enumerate(stages, 1):   # a stage reused from run 1 has its notebook there
        assert ev.paths[f"notebook:0{i}_{s['stage']}"] == proj / "reports" / (s["cached_from"] or run2) / f"0{i}_{s['stage']}.ipynb"
    assert ev.paths["features"].name == "features.parquet" and ev.paths["features"].is_relative_to(proj)
    assert ev.paths["metrics"] == proj / "runs" / run2 / "evaluate" / "metrics.json"
    assert ev.changed == [] and "rmse" in ev.metrics
    assert ev.digest == hash_json({"model": MODEL, "version": "2", "run": run2, "mlflow_run_id": ev.mlflow_run_id,
                                   "data_digest": ev.data_digest, "files": ev.files})
    assert collect_evidence(proj, MODEL, "2").digest == ev.digest


def test_evidence_of_a_reused_stage_is_in_the_run_that_made_it(proj):
    "Written here as the runner writes a cached stage, so the test does not depend on the cache hitting."
    run1, run2 = run_of(proj, "1"), run_of(proj, "2")
    record_path = proj / "runs" / run2 / "run.json"
    record = read_json(record_path)
    one = {s["stage"]: s for s in read_json(proj / "runs" / run1 / "run.json")["stages"]}
    for s in record["stages"][:2]:
        s |= {"status": "cached", "notebook": None, "cached_from": run1, "manifest": one[s["stage"]]["manifest"]}
    record_path.write_text(json.dumps(record))
    ev = collect_evidence(proj, MODEL, "2")
    assert ev.paths["notebook:01_ingest"] == proj / "reports" / run1 / "01_ingest.ipynb"
    assert ev.paths["notebook:02_features"] == proj / "reports" / run1 / "02_features.ipynb"
    assert ev.paths["features"] == proj / "runs" / run1 / "features" / "features.parquet"
    assert ev.paths["notebook:04_evaluate"] == proj / "reports" / run2 / "04_evaluate.ipynb"
    (proj / "reports" / run1 / "02_features.ipynb").unlink()
    with pytest.raises(ReviewError, match="the executed notebook of stage 'features'"):
        collect_evidence(proj, MODEL, "2")


def test_evidence_shows_a_changed_file_and_names_a_missing_one(proj):
    before = collect_evidence(proj, MODEL, "2")
    metrics = before.paths["metrics"]
    metrics.write_text(metrics.read_text().replace('"rmse"', '"rmse" ', 1))
    after = collect_evidence(proj, MODEL, "2")
    assert after.digest != before.digest and after.changed == ["metrics"]
    shap = before.paths["shap"]
    shap.unlink()
    with pytest.raises(ReviewError, match=f"output 'shap' of stage 'explain', {shap} does not exist"):
        collect_evidence(proj, MODEL, "2")
    nb = before.paths["notebook:01_ingest"]
    nb.unlink()
    with pytest.raises(ReviewError, match="the executed notebook of stage 'ingest'"):
        collect_evidence(proj, MODEL, "1")


def test_candidates_show_the_queue_with_deltas_against_the_champion(proj):
    queue = candidates(proj)
    assert [c["version"] for c in queue] == ["2", "1"]
    c2 = queue[0]
    assert c2["run"] == run_of(proj, "2") and len(c2["data_digest"]) == 64 and c2["status"] == "pending_review"
    assert datetime.fromisoformat(c2["created"]).tzinfo is not None
    assert c2["checks_passed"] and c2["checks_summary"].endswith("passed") and c2["checks"][0]["meaning"]
    assert c2["metrics"]["rmse"] > 0 and c2["champion_version"] is None and c2["deltas"] == {}
    approve(proj, "1")
    queue = candidates(proj, MODEL)
    assert [c["version"] for c in queue] == ["2"]
    c2 = queue[0]
    m1 = read_json(collect_evidence(proj, MODEL, "1").paths["metrics"])["overall"]
    assert c2["champion_version"] == "1" and c2["champion_metrics"] == m1
    assert c2["compared_on"] == "the champion's own test rows"   # version 2's run saw no champion
    assert c2["deltas"]["rmse"] == pytest.approx(c2["metrics"]["rmse"] - m1["rmse"])
    assert describe(proj, MODEL, "1")["decision"]["by"] == "ana"


def test_the_queue_shows_the_baseline_beside_the_candidate(proj):
    "The baseline the evaluate stage scored on the same test rows: a candidate worse than it shows at once."
    metrics = {v: read_json(collect_evidence(proj, MODEL, v).paths["metrics"]) for v in ("1", "2")}
    queue = candidates(proj)
    assert [c["baseline_metrics"] for c in queue] == [metrics["2"]["baseline"], metrics["1"]["baseline"]]
    c2 = queue[0]
    assert c2["baseline_metrics"]["rmse"] > 0 and c2["baseline_metrics"]["n"] == c2["metrics"]["n"]   # the same rows
    assert c2["baseline_deltas"]["rmse"] == pytest.approx(c2["metrics"]["rmse"] - c2["baseline_metrics"]["rmse"])
    assert "n" not in c2["baseline_deltas"] and c2["unit"] == ""   # quakes' magnitude has no unit in its config
    rows = compare_metrics(c2["metrics"], c2["baseline_metrics"], c2["champion_metrics"])
    assert [r["name"] for r in rows][::len(rows) - 1] == ["RMSE", "test rows"]
    assert rows[0]["candidate"] == c2["metrics"]["rmse"] and rows[0]["baseline"] == c2["baseline_metrics"]["rmse"]
    with open(proj / "data" / "dataset.toml", "a") as f: f.write('\n[columns.mag]\nunit = "magnitude"\n')
    assert describe(proj, MODEL, "2")["unit"] == "magnitude"


def test_the_queue_compares_on_the_same_rows_when_the_run_saw_the_champion(proj):
    approve(proj, "1")
    proc = run_seatrial(proj, "run", "--config", str(proj / "data" / "dataset.toml"), "-q", "-p", "train.seed=2")
    assert proc.returncode == 0, proc.stderr
    c3 = describe(proj, MODEL, "3")     # evaluated against champion 1, on version 3's own test rows
    same = read_json(collect_evidence(proj, MODEL, "3").paths["metrics"])["champion"]
    assert c3["compared_on"] == "same test rows" and c3["champion_version"] == "1" and c3["champion_metrics"] == same
    assert c3["deltas"]["rmse"] == pytest.approx(c3["metrics"]["rmse"] - same["rmse"])
    approve(proj, "2")                  # the champion moved after version 3's run
    c3 = next(c for c in candidates(proj) if c["version"] == "3")
    assert c3["champion_version"] == "2" and c3["compared_on"] == "the champion's own test rows"
    assert c3["champion_metrics"] == read_json(collect_evidence(proj, MODEL, "2").paths["metrics"])["overall"]


# --- deciding ---------------------------------------------------------------------------------------------------

def test_approval_moves_champion_tags_the_version_and_is_recorded(proj):
    ev = collect_evidence(proj, MODEL, "1")
    entry = decide(proj, MODEL, "1", "approve", "ana", APPROVER, "  residuals even across depth bands ", ev.digest)
    assert {"seq", "time", "actor", "action", "model", "version", "comment", "evidence", "previous_champion",
            "outcome", "prev_hash", "hash"} <= set(entry)
    assert (entry["seq"], entry["actor"], entry["action"], entry["outcome"]) == (1, "ana", "approve", "approved")
    assert entry["previous_champion"] is None and entry["champion"] == "1"
    assert entry["evidence"]["digest"] == ev.digest and entry["evidence"]["files"] == ev.files
    assert entry["evidence"]["run"] == ev.run and entry["evidence"]["data_digest"] == ev.data_digest
    assert json.loads(ledger_lines(proj)[0]) == entry
    client = mlflow_client(proj)     # a plain MLflow client sees it
    mv = client.get_model_version_by_alias(MODEL, "champion")
    assert str(mv.version) == "1"
    assert mv.tags["seatrial.status"] == "approved" and mv.tags["seatrial.decision.by"] == "ana"
    assert mv.tags["seatrial.decision.comment"] == "  residuals even across depth bands "
    assert mv.tags["seatrial.decision.ledger_hash"] == entry["hash"] and mv.tags["seatrial.decision.evidence"] == ev.digest
    assert champion(proj, MODEL) == "1" and verify(proj) == []

    entry2 = approve(proj, "2", who="ben")
    assert entry2["previous_champion"] == "1" and entry2["prev_hash"] == entry["hash"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert client.get_model_version(MODEL, "1").tags["seatrial.status"] == "approved"


def test_rejection_leaves_the_champion(proj):
    approve(proj, "1")
    ev = collect_evidence(proj, MODEL, "2")
    entry = decide(proj, MODEL, "2", "reject", "ana", APPROVER, "worse in the deep band", ev.digest)
    assert (entry["outcome"], entry["previous_champion"], entry["champion"]) == ("rejected", "1", "1")
    client = mlflow_client(proj)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "2").tags["seatrial.status"] == "rejected"
    assert verify(proj) == []


def test_bad_input_is_refused_with_a_specific_error_and_not_recorded(proj):
    digest = collect_evidence(proj, MODEL, "1").digest
    with pytest.raises(UnknownVersionError, match=r"no registered model 'ships'.*registered models: quakes"):
        decide(proj, "ships", "1", "approve", "ana", APPROVER, "ok", digest)
    with pytest.raises(UnknownVersionError, match="model 'quakes' has no version '7'; its versions are 1, 2"):
        decide(proj, MODEL, "7", "approve", "ana", APPROVER, "ok", digest)
    with pytest.raises(UnknownVersionError):
        collect_evidence(proj, MODEL, "seven")
    with pytest.raises(MissingCommentError, match="approve quakes version 1: the comment is empty"):
        decide(proj, MODEL, "1", "approve", "ana", APPROVER, "  \n", digest)
    with pytest.raises(UnknownActionError, match="'promote' on quakes version 1: a reviewer can 'approve' or 'reject'"):
        decide(proj, MODEL, "1", "promote", "ana", APPROVER, "ok", digest)
    with pytest.raises(ReviewError, match="the name of who decides is empty"):
        decide(proj, MODEL, "1", "approve", "", APPROVER, "ok", digest)
    with pytest.raises(UnknownVersionError, match="no registered model 'ships'"):
        rollback(proj, "ships", "ana", APPROVER, "back")
    assert history(proj) == [] and champion(proj, MODEL) is None


def test_a_version_already_decided_is_refused_and_the_attempt_recorded(proj):
    approve(proj, "1")
    digest = collect_evidence(proj, MODEL, "1").digest
    with pytest.raises(AlreadyDecidedError, match=r"quakes version 1 was already decided: approved by ana at .* \(ledger seq 1\)"):
        decide(proj, MODEL, "1", "reject", "ben", APPROVER, "second thoughts", digest)
    last = history(proj)[0]
    assert (last["actor"], last["action"], last["outcome"], last["error"]) == ("ben", "reject", "refused", "AlreadyDecidedError")
    assert "already decided" in last["reason"]
    assert mlflow_client(proj).get_model_version(MODEL, "1").tags["seatrial.status"] == "approved"


def test_a_viewer_cannot_decide_and_the_attempt_is_recorded(proj):
    digest = collect_evidence(proj, MODEL, "2").digest
    with pytest.raises(NotAllowedError, match="cy may not approve quakes version 2: deciding needs the 'approver' role"):
        decide(proj, MODEL, "2", "approve", "cy", VIEWER, "looks fine to me", digest)
    [entry] = history(proj)
    assert (entry["actor"], entry["roles"], entry["outcome"], entry["error"]) == ("cy", ["viewer"], "refused", "NotAllowedError")
    mv = mlflow_client(proj).get_model_version(MODEL, "2")
    assert mv.tags["seatrial.status"] == "pending_review" and champion(proj, MODEL) is None


def test_stale_evidence_is_refused_and_the_attempt_recorded(proj):
    opened = collect_evidence(proj, MODEL, "2")
    checks = opened.paths["checks"]      # someone re-writes the checks after the reviewer opened the version
    data = json.loads(checks.read_text())
    data[0]["passed"] = not data[0]["passed"]
    checks.write_text(json.dumps(data))
    with pytest.raises(StaleEvidenceError, match=r"evidence of quakes version 2 changed since it was opened.*checks"):
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "approved as seen", opened.digest)
    [entry] = history(proj)
    assert entry["outcome"] == "refused" and entry["error"] == "StaleEvidenceError"
    assert entry["evidence"]["changed"] == ["checks"] and entry["evidence"]["digest"] != opened.digest
    assert champion(proj, MODEL) is None
    assert mlflow_client(proj).get_model_version(MODEL, "2").tags["seatrial.status"] == "pending_review"
    fresh = collect_evidence(proj, MODEL, "2")   # re-opened: the decision on what is there now goes through
    assert decide(proj, MODEL, "2", "reject", "ana", APPROVER, "checks were rewritten", fresh.digest)["outcome"] == "rejected"


def test_a_decision_against_a_champion_that_moved_is_refused_and_recorded(proj):
    opened = collect_evidence(proj, MODEL, "2")      # ana opens version 2: there is no champion to compare with
    approve(proj, "1", who="ben")                     # meanwhile ben approves version 1
    with pytest.raises(ChampionMovedError, match="compared with no champion, the champion is now version 1"):
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "better than nothing", opened.digest, champion_version="")
    entry = history(proj)[0]
    assert (entry["outcome"], entry["error"], entry["compared_with"]) == ("refused", "ChampionMovedError", "")
    assert champion(proj, MODEL) == "1" and issubclass(ChampionMovedError, StaleEvidenceError)
    done = decide(proj, MODEL, "2", "reject", "ana", APPROVER, "worse than version 1", opened.digest, champion_version="1")
    assert (done["outcome"], done["compared_with"]) == ("rejected", "1")


def test_missing_evidence_is_refused_and_recorded(proj):
    digest = collect_evidence(proj, MODEL, "2").digest
    (proj / "runs" / run_of(proj, "2") / "explain" / "importance.json").unlink()
    with pytest.raises(ReviewError, match=r"output 'importance' of stage 'explain'.*does not exist"):
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "ok", digest)
    assert history(proj)[0]["outcome"] == "refused"


# --- the ledger under attack ------------------------------------------------------------------------------------

def test_a_tampered_ledger_is_named_and_blocks_decisions(proj):
    approve(proj, "1")
    path = ledger_path(proj)
    lines = path.read_text().splitlines()
    path.write_text(lines[0].replace("fits the sea trial", "fits, says the boss") + "\n")
    problems = verify(proj)
    assert problems[0].startswith("line 1 (seq 1): its content does not match its hash")
    before = path.read_bytes()
    digest = collect_evidence(proj, MODEL, "2").digest
    with pytest.raises(LedgerBrokenError, match=r"line 1 \(seq 1\)") as err:
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "ok", digest)
    assert isinstance(err.value, ReviewError)
    with pytest.raises(LedgerBrokenError):
        rollback(proj, MODEL, "ana", APPROVER, "back")
    assert path.read_bytes() == before     # nothing appended, not even the refusal
    mv = mlflow_client(proj).get_model_version(MODEL, "2")
    assert mv.tags["seatrial.status"] == "pending_review" and champion(proj, MODEL) == "1"


def test_a_ledger_cut_short_is_caught_by_the_registry(proj):
    approve(proj, "1")
    path = ledger_path(proj)
    path.write_text("")
    (path.parent / (path.name + ".head")).unlink()    # the head file gone too: only MLflow remembers
    problems = verify(proj)
    assert any(p.startswith("quakes version 1: its registry tags record a decision in ledger entry seq 1") for p in problems)
    assert any("the registry's champion is version 1, but the ledger's is none" in p for p in problems)


def test_champion_moved_outside_seatrial_is_reported_and_blocks_rollback(proj):
    approve(proj, "1")
    mlflow_client(proj).set_registered_model_alias(MODEL, "champion", "2")
    assert verify(proj) == ["quakes: the registry's champion is version 2, but the ledger's is version 1: the alias was "
                            "moved outside seatrial, or ledger entries are missing"]
    with pytest.raises(RollbackError, match="moved outside seatrial"):
        rollback(proj, MODEL, "ana", APPROVER, "back to 1")


# --- rollback and history ---------------------------------------------------------------------------------------

def test_rollback_history_and_champion_at(proj):
    t0 = datetime.now(UTC)
    time.sleep(0.01)
    e1 = approve(proj, "1", comment="first champion")
    with pytest.raises(RollbackError, match="version 1 is the first champion"):
        rollback(proj, MODEL, "ana", APPROVER, "undo")
    e2 = approve(proj, "2", who="ben", comment="better")
    assert champion(proj, MODEL) == "2"
    with pytest.raises(NotAllowedError):
        rollback(proj, MODEL, "cy", VIEWER, "undo")
    with pytest.raises(RollbackError, match="the champion is version 2, not 1"):
        rollback(proj, MODEL, "ana", APPROVER, "undo", expected_champion="1")
    with pytest.raises(MissingCommentError):
        rollback(proj, MODEL, "ana", APPROVER, "")
    back = rollback(proj, MODEL, "ana", APPROVER, "fuel predictions drift on TNK003", expected_champion="2")
    assert (back["action"], back["outcome"], back["version"], back["from_version"]) == ("rollback", "rolled_back", "1", "2")
    assert back["previous_champion"] == "2" and back["champion"] == "1"
    client = mlflow_client(proj)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["seatrial.status"] == "rolled_back" and tags["seatrial.rollback.ledger_hash"] == back["hash"]
    with pytest.raises(AlreadyDecidedError):       # a rolled-back version is not decided again
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "again", collect_evidence(proj, MODEL, "2").digest)

    assert champion_at(proj, MODEL, t0) is None
    assert champion_at(proj, MODEL, e1["time"]) == "1"
    assert champion_at(proj, MODEL, e2["time"]) == "2"
    assert champion_at(proj, MODEL, back["time"]) == "1"
    assert champion_at(proj, MODEL, datetime.now(UTC).replace(tzinfo=None).isoformat()) == "1"
    done = [(e["actor"], e["action"], e["version"], e["outcome"]) for e in history(proj, MODEL) if e["outcome"] != "refused"]
    assert done == [("ana", "rollback", "1", "rolled_back"), ("ben", "approve", "2", "approved"),
                    ("ana", "approve", "1", "approved")]
    assert [e["comment"] for e in history(proj, MODEL, "1") if e["outcome"] == "approved"] == ["first champion"]
    refused = [e["error"] for e in history(proj) if e["outcome"] == "refused"]
    assert refused == ["AlreadyDecidedError", "RollbackError", "NotAllowedError", "RollbackError"]
    assert verify(proj) == []


def test_ledger_location_can_be_set(proj, tmp_path, monkeypatch):
    elsewhere = tmp_path / "secure" / "decisions.jsonl"
    monkeypatch.setenv("SEATRIAL_LEDGER", str(elsewhere))
    approve(proj, "1")
    assert len(Ledger(elsewhere).entries()) == 1 and not (proj / "ledger").exists()


# --- two reviewers at the same moment ---------------------------------------------------------------------------

def test_two_reviewers_in_threads_one_decision_takes_effect(proj):
    digest = collect_evidence(proj, MODEL, "2").digest
    barrier, results = threading.Barrier(2), {}

    def reviewer(who, action):
        barrier.wait()
        try: results[who] = decide(proj, MODEL, "2", action, who, APPROVER, f"{who} says {action}", digest)
        except ReviewError as err: results[who] = err
    threads = [threading.Thread(target=reviewer, args=a) for a in (("ana", "approve"), ("ben", "reject"))]
    for t in threads: t.start()
    for t in threads: t.join()
    won = [w for w, r in results.items() if isinstance(r, dict)]
    lost = [w for w, r in results.items() if isinstance(r, AlreadyDecidedError)]
    assert len(won) == 1 and len(lost) == 1
    winner = results[won[0]]
    entries = history(proj, MODEL, "2")
    assert len(entries) == 2 and entries[1] == winner
    assert entries[0]["actor"] == lost[0] and entries[0]["outcome"] == "refused" and "already decided" in entries[0]["reason"]
    mv = mlflow_client(proj).get_model_version(MODEL, "2")
    assert mv.tags["seatrial.status"] == winner["outcome"] and mv.tags["seatrial.decision.by"] == won[0]
    assert champion(proj, MODEL) == ("2" if winner["outcome"] == "approved" else None)
    assert verify(proj) == []


def _decide_in_process(root: str, digest: str, who: str, barrier, results) -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from seatrial.review import ReviewError, decide
    from seatrial.tracking import model_version
    model_version(root, MODEL, "1")     # MLflow imported and connected before the race starts
    barrier.wait()
    try:
        e = decide(root, MODEL, "1", "approve", who, APPROVER, f"{who} approves", digest)
        results.put((who, "approved", e["seq"]))
    except ReviewError as err:
        results.put((who, type(err).__name__, str(err)))


def test_two_reviewers_in_processes_one_decision_takes_effect(proj):
    digest = collect_evidence(proj, MODEL, "1").digest
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_decide_in_process, args=(str(proj), digest, who, barrier, results))
             for who in ("ana", "ben", "cy")]
    for p in procs: p.start()
    got = [results.get(timeout=300) for _ in procs]
    for p in procs: p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    outcomes = sorted(r[1] for r in got)
    assert outcomes == ["AlreadyDecidedError", "AlreadyDecidedError", "approved"]
    winner = next(r[0] for r in got if r[1] == "approved")
    assert all("already decided: approved by " + winner in r[2] for r in got if r[1] != "approved")
    entries = history(proj, MODEL, "1")
    assert len(entries) == 3 and [e["seq"] for e in entries] == [3, 2, 1]
    assert entries[-1]["actor"] == winner and entries[-1]["outcome"] == "approved"
    assert {e["actor"] for e in entries[:2]} == {"ana", "ben", "cy"} - {winner}
    client = mlflow_client(proj)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "1").tags["seatrial.decision.by"] == winner
    assert verify(proj) == []


def test_a_registry_failure_midway_leaves_no_trace_but_the_failed_attempt(proj, monkeypatch):
    from seatrial import tracking
    real = tracking.set_version_tags

    def flaky(root, model, version, tags):   # MLflow goes away after the alias moved and the first tags were written
        if "seatrial.decision.by" in tags:
            real(root, model, version, {k: v for k, v in tags.items() if k.startswith("seatrial.decision.")})
            raise ConnectionError("MLflow server unreachable")
        real(root, model, version, tags)

    monkeypatch.setattr(tracking, "set_version_tags", flaky)
    digest = collect_evidence(proj, MODEL, "2").digest
    with pytest.raises(ReviewError, match="refused the update"):
        decide(proj, MODEL, "2", "approve", "ana", APPROVER, "fits", digest)
    monkeypatch.setattr(tracking, "set_version_tags", real)
    tags = mlflow_client(proj).get_model_version(MODEL, "2").tags
    assert tags["seatrial.status"] == "pending_review"
    assert not [k for k in tags if k.startswith("seatrial.decision.")]
    assert champion(proj, MODEL) is None
    assert [e["outcome"] for e in history(proj, MODEL)] == ["failed"]
    assert verify(proj) == []
