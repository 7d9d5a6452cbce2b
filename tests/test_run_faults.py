"""The run record after faults (issue 9): a failed MLflow recording, two runs at once, kill -9 during each stage, the failing
cell named for every way a stage can stop, and run ids that are ids. Real `seatrial` runs on R's quakes, real kernels,
a real SQLite MLflow store."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SEATRIAL, copy_pipeline, mlflow_client, run_seatrial, tiny_stage, write_quakes

from seatrial.cli import main
from seatrial.stage import read_manifest
from seatrial.core import hash_path, read_json, write_json
from seatrial.runner import KernelPool, StageFailedError, discover_stages, execute_stage
from seatrial.tracking import mlflow_name

STAGES = ["ingest", "features", "train", "evaluate", "explain"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


def _popen(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(SEATRIAL), "--root", str(root), *args], cwd=root, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _project(tmp_path: Path) -> tuple[Path, list[str]]:
    "A fresh project on R's quakes with a private copy of the stages; the arguments of a quiet run of it."
    root = tmp_path / "project"
    config, pipeline = write_quakes(root / "data"), copy_pipeline(tmp_path / "stages")
    return root, ["run", "--config", str(config), "--pipeline", str(pipeline), "-q"]


def _runs(root: Path) -> dict[str, dict]:
    return {p.parent.name: read_json(p) for p in (root / "runs").glob("*/run.json")}


def _mlflow_runs(root: Path, run: str) -> list:
    "Every MLflow run of a seatrial run: its parent and the parent's children."
    client = mlflow_client(root)
    found = client.get_experiment_by_name("quakes")
    if found is None: return []   # killed before the store was made
    exp = found.experiment_id
    parents = client.search_runs([exp], f"tags.`seatrial.run` = '{run}'")
    return parents + [c for p in parents for c in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{p.info.run_id}'")]


def _assert_consistent(root: Path) -> None:
    "Every cached stage and every stage a run used points at outputs with the content its manifest records."
    for e in read_json(root / ".seatrial" / "cache.json").values():
        for o in read_manifest(root / e["manifest"])["outputs"].values():   # paths project- and manifest-relative
            assert hash_path(o["path"]) == o["sha256"], o["path"]
    assert not list((root / "reports").rglob(".*.partial.ipynb"))


def test_mlflow_names_are_mapped_to_storable_ones():
    assert mlflow_name("num_leaves") == "num_leaves" and mlflow_name("a/b.c d-e") == "a/b.c d-e"
    for bad in ("bad?key", "x" * 300, "../up", "a//b", "ünï", ""):
        m = mlflow_name(bad)
        assert m != bad and len(m) <= 250 and all(ch.isalnum() or ch in "_-" for ch in m), m
    assert mlflow_name("a?b") != mlflow_name("a!b")   # two names never collide


def _start(root: Path, run: list[str], *variants: list[str]) -> list[subprocess.CompletedProcess]:
    "Start one `seatrial run` per variant of extra arguments, all at once; their outcomes."
    procs = [_popen(root, *run, *extra) for extra in variants]
    outs = [p.communicate(timeout=600) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


def _refused(p: subprocess.CompletedProcess, winner: str) -> bool:
    return p.returncode == 1 and f"run {winner} is in progress since" in p.stderr and "pass --wait" in p.stderr


def test_two_runs_at_once_one_runs_the_other_refuses_or_waits(quakes_project, tmp_path):
    # The lock is the runner's, whatever the stages: one small stage keeps this quick; MLflow's store is real and fresh.
    root, config = quakes_project
    tiny_stage(tmp_path / "stages", "01_make.ipynb", "from pathlib import Path\nfrom seatrial.stage import write_manifest",
           "Path(out_dir).mkdir(parents=True, exist_ok=True)\nPath(out_dir, 'n.txt').write_text(str(n))\n"
           "write_manifest(out_dir, 'make', {'n': Path(out_dir, 'n.txt')}, {'n': n})",
           params='out_dir: str = "."  # this stage\nn: int = 1  # a number\n')
    run = ["run", "--config", str(config), "--pipeline", str(tmp_path / "stages"), "-q"]
    done = sorted(_start(root, run, [], []), key=lambda p: p.returncode)   # a fresh project
    assert [p.returncode for p in done] == [0, 1] and _refused(done[1], done[0].stdout.strip()), [p.stderr for p in done]
    # an existing project: a run that has work to do, another that refuses, a third that waits and reuses the result
    done = _start(root, run, ["-p", "n=2"], ["-p", "n=2"], ["-p", "n=2", "--wait"])
    ran = [p for p in done if p.returncode == 0 and "[1/1] make       running" in p.stderr]
    assert len(ran) == 1, [p.stderr for p in done]
    winner = ran[0].stdout.strip()
    assert all(_refused(p, winner) for p in done[:2] if p is not ran[0])
    assert done[2].returncode == 0 and done[2].stdout.strip() == winner
    assert done[2] is ran[0] or ("waiting for it to end" in done[2].stderr and "nothing changed" in done[2].stderr)
    assert not any("Traceback" in p.stderr or "alembic" in p.stderr for p in done)
    assert {r["status"] for r in _runs(root).values()} == {"finished"} and len(_runs(root)) == 2
    _assert_consistent(root)
    listed = run_seatrial(root, "runs")
    assert listed.returncode == 0 and listed.stdout.count("finished") == 2
    client = mlflow_client(root)   # one store, one experiment, two parent runs, none left RUNNING
    runs = client.search_runs([client.get_experiment_by_name("quakes").experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try: fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError): continue
        if int(fields[1]) == pid: out.append(int(stat.parent.name))
    return out


def _gone(pid: int) -> bool:
    try: state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError: return True
    return state == "Z"


def test_kill_9_during_each_stage_then_a_failed_recording_then_a_run_that_records(tmp_path):
    root, run = _project(tmp_path)
    run += ["-p", 'train.grid=[{"num_leaves": 15, "bad?key": 1}]']   # a key MLflow refuses, mapped on the way
    killed = []
    for k, stage in enumerate(STAGES, 1):   # killed at stage k; the stages before it are reused from the last attempt
        proc = _popen(root, *run)
        said = []
        for line in proc.stderr:
            said.append(line)
            if line.startswith(f"[{k}/5] {stage:<10} running"): break
        if killed:   # the killed runner's lock: the kernel let go of it, its note is still there
            assert any(f"run {killed[-1]} (pid" in s and "taking it over" in s for s in said), said
        run_id = next(r for r, rec in _runs(root).items() if rec["status"] == "running")
        partial = root / "reports" / run_id / f".0{k}_{stage}.partial.ipynb"
        while not partial.exists(): time.sleep(0.05)   # the stage's notebook is executing
        kernels = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed.append(run_id)
        rec = read_json(root / "runs" / run_id / "run.json")
        assert rec["status"] == "running" and (rec["stages"][-1]["stage"], rec["stages"][-1]["status"]) == (stage, "running")
        listed = run_seatrial(root, "runs")   # notices the dead run
        assert listed.returncode == 0 and f"run {run_id} was interrupted" in listed.stderr
        rec = read_json(root / "runs" / run_id / "run.json")
        assert rec["status"] == "interrupted" and rec["interrupted"] and rec["stages"][-1]["status"] == "interrupted"
        assert [s["status"] for s in rec["stages"][:-1]] == ["cached"] * (k - 2) + ["finished"] * (k > 1)
        assert not partial.exists()
        assert "RUNNING" not in {r.info.status for r in _mlflow_runs(root, run_id)}
        deadline = time.time() + 60   # a stage kernel does not outlive its runner for long
        while not all(_gone(p) for p in kernels) and time.time() < deadline: time.sleep(0.2)
        assert all(_gone(p) for p in kernels), kernels

    # the last stage runs, then MLflow cannot store an artifact: the run fails, saying so, and keeps its stages
    (root / "mlartifacts").rename(root / "mlartifacts.away")
    (root / "mlartifacts").write_text("in the way")
    proc = run_seatrial(root, *run)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "recording in MLflow failed" in proc.stderr and "the next `seatrial run` records them" in proc.stderr
    failed = next(r for r, rec in _runs(root).items() if r not in killed)
    rec = _runs(root)[failed]
    assert rec["status"] == "failed" and rec["error"].startswith("recording in MLflow failed: ")
    assert [s["status"] for s in rec["stages"]] == ["cached"] * 4 + ["finished"]
    assert {r.info.status for r in _mlflow_runs(root, failed)} <= {"FAILED"}   # nothing left RUNNING
    assert all(_runs(root)[r]["status"] == "interrupted" for r in killed)
    _assert_consistent(root)

    # a run whose recording failed is never "nothing changed": the next run records and registers its stages
    (root / "mlartifacts").unlink()
    (root / "mlartifacts.away").rename(root / "mlartifacts")
    proc = run_seatrial(root, *run)
    assert proc.returncode == 0, proc.stderr
    final = proc.stdout.strip()
    assert final not in [*killed, failed] and "recording them now" in proc.stderr
    rec = _runs(root)[final]
    assert rec["status"] == "finished" and rec["model_version"] == "1"
    assert [s["status"] for s in rec["stages"]] == ["cached"] * 5
    for s in rec["stages"]:
        for o in read_manifest(root / s["manifest"])["outputs"].values(): assert hash_path(o["path"]) == o["sha256"]
    client = mlflow_client(root)
    assert client.get_model_version("quakes", "1").tags["seatrial.run"] == final
    train = next(r for r in _mlflow_runs(root, final) if r.info.run_name == "train")
    trials = client.search_runs([train.info.experiment_id], f"tags.`mlflow.parentRunId` = '{train.info.run_id}'")
    renamed = {k.removeprefix("seatrial.name."): v for t in trials for k, v in t.data.tags.items() if k.startswith("seatrial.name.")}
    assert list(renamed.values()) == ["bad?key"] and trials[0].data.params[next(iter(renamed))] == "1"
    proc = run_seatrial(root, *run)   # now it is recorded: nothing to do
    assert proc.returncode == 0 and proc.stdout.strip() == final and "nothing changed" in proc.stderr
    shown = run_seatrial(root, "show", killed[2])
    assert shown.returncode == 0 and "interrupted" in shown.stdout


FAILURES = {   # first line of the failing cell -> what the error says
    "import sys; sys.exit(0)": "stopped (sys.exit) without writing its manifest",
    "import os; os._exit(0)": "the kernel died",
    "import os; os.kill(os.getpid(), 9)": "the kernel died",
    "import time; time.sleep(60)": "time limit of 3 s",
    "raise ValueError('hull data corrupt')": "ValueError: hull data corrupt",
}


def test_the_failing_cell_is_named_and_the_kept_notebook_says_what_ran(tmp_path):
    for i, line in enumerate(FAILURES, 1):
        tiny_stage(tmp_path / "stages", f"0{i}_boom{i}.ipynb", "a = 1", f"{line}\nb = 2", "c = 3")
    stages = discover_stages(tmp_path / "stages")
    pool = KernelPool(tmp_path / "stages")
    try:
        for i, (stage, line) in enumerate(zip(stages, FAILURES)):
            with pytest.raises(StageFailedError) as info:
                execute_stage(stage, {"out_dir": str(tmp_path / stage.name)}, tmp_path / "rep" / f"{stage.label}.ipynb",
                              tmp_path / stage.name, pool, cell_timeout=3, progress=False,
                              next_stage=stages[i + 1] if i + 1 < len(stages) else None)
            err = info.value
            # code cells: the parameters, papermill's injected ones, `a = 1`, the failing one (4), one that never ran
            assert (err.cell, err.line) == (4, line) and FAILURES[line] in err.detail, err
            assert f"at cell 4 ({line})" in str(err)
            code = [c for c in read_json(err.notebook)["cells"] if c["cell_type"] == "code"]
            assert [c["metadata"]["papermill"]["status"] for c in code] == ["completed"] * 3 + ["failed", "pending"]
    finally:
        pool.close()


def test_a_killed_kernel_is_named_in_run_json_and_show(quakes_project, tmp_path, capsys):
    root, config = quakes_project
    pipe = tmp_path / "stages"
    tiny_stage(pipe, "01_boom.ipynb", "a = 1", "import os\nos.kill(os.getpid(), 9)")
    proc = run_seatrial(root, "run", "--config", str(config), "--pipeline", str(pipe), "-q")
    assert proc.returncode == 1 and "stage 'boom' failed at cell 4 (import os): the kernel died" in proc.stderr
    (run_id, rec), = _runs(root).items()
    assert (rec["status"], rec["stages"][0]["cell"], rec["stages"][0]["cell_line"]) == ("failed", 4, "import os")
    shown = run_seatrial(root, "show", run_id)
    assert "error at cell 4 (import os): the kernel died" in shown.stdout


def test_a_run_id_is_an_id_not_a_path(tmp_path, capsys):
    mine, other = tmp_path / "mine", tmp_path / "other"
    write_json(other / "runs" / "r-1" / "run.json", {"run_id": "r-1", "status": "finished", "dataset": "secret",
                                                     "config": "", "started": "2026-01-01T00:00:00+00:00", "seconds": 1.0,
                                                     "stages": []})
    (mine / "runs").mkdir(parents=True)
    for bad in ("../other/runs/r-1", "../../other/runs/r-1", str(other / "runs" / "r-1"), "..", "a\\b"):
        assert main(["--root", str(mine), "show", bad]) == 1
        err = capsys.readouterr()
        assert "is not a run id" in err.err and "secret" not in err.out
