"""seatrial.launch: a run started from a notebook is the command line's own run, watched through its record, stopped cleanly."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import mlflow_client, run_seatrial, tiny_stage

from seatrial.core import read_json
from seatrial.fleet import generate_demo
from seatrial.launch import BackgroundRun, LaunchError
from seatrial.stage import ParameterError

WRITE = "from pathlib import Path\nfrom seatrial.stage import write_manifest\nPath(out_dir).mkdir(parents=True, exist_ok=True)\n"


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    "(project, pipeline): a small generated fleet, and two stages: one writes a number, one waits (or fails) as told."
    generate_demo(tmp_path / "data", n_rows=500, seed=0)
    pipe = tmp_path / "stages"
    tiny_stage(pipe, "01_count.ipynb", WRITE + '(Path(out_dir) / "n.txt").write_text(str(n))',
               'write_manifest(out_dir, "count", {"n": Path(out_dir) / "n.txt"})',
               params='out_dir: str = "."  # its folder\nn: int = 3  # a number (x >= 0)\n')
    tiny_stage(pipe, "02_wait.ipynb", "import time\nfor _ in range(int(seconds * 10)): time.sleep(0.1)",
               "assert not fail, 'the hull data is corrupt'", WRITE + '(Path(out_dir) / "w.txt").write_text("done")',
               'write_manifest(out_dir, "wait", {"w": Path(out_dir) / "w.txt"})',
               params='out_dir: str = "."  # its folder\nseconds: float = 0.0  # how long to wait (x >= 0)\n'
                      'fail: bool = False  # fail on purpose\n')
    return tmp_path, pipe


def _watch(run: BackgroundRun, until=lambda s: s.done, timeout: float = 180) -> tuple[object, list]:
    "Poll as the workbench does; the states seen on the way."
    seen, end = [], time.time() + timeout
    while time.time() < end:
        s = run.state()
        seen.append(s)
        if until(s): return s, seen
        time.sleep(0.1)
    raise AssertionError(f"still {seen[-1].describe()} after {timeout} s; log: {seen[-1].log_tail}")


def test_a_background_run_is_watched_cell_by_cell_and_recorded_as_the_cli_records(tiny):
    root, pipe = tiny
    run = BackgroundRun.start(root, "data/dataset.toml", {"count": {"n": 7}, "wait": {"seconds": 3.0}}, pipeline=pipe)
    assert run.state().status in ("starting", "running") and not run.done
    final, seen = _watch(run)
    assert final.status == "finished" and final.result_run == run.run_id and final.returncode == 0, final
    assert [s["status"] for s in final.stages] == ["finished", "finished"]
    # progress: the running stage, its cell and the cell's first line, as the run went
    at = {(c["stage"], c["cell"], c["line"]) for s in seen if (c := s.current) and c["cell"]}
    assert ("wait", 3, "import time") in at, at
    assert all(c[1] <= 6 for c in at)
    record = read_json(root / "runs" / run.run_id / "run.json")
    assert record["source"] == "workbench" and "current" not in record
    assert [s["params"] for s in record["stages"]] == [{"n": 7}, {"seconds": 3.0, "fail": False}]
    parent = mlflow_client(root).get_run(record["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["seatrial.source"] == "workbench"
    assert not any("TCP without encryption" in ln for ln in final.log_tail)

    again = BackgroundRun.start(root, "data/dataset.toml", {"count": {"n": 7}, "wait": {"seconds": 3.0}}, pipeline=pipe).wait(180)
    assert (again.status, again.result_run) == ("unchanged", run.run_id)
    assert [s["status"] for s in again.stages] == ["cached", "cached"]


def test_a_failed_stage_names_its_cell_and_keeps_its_notebook(tiny):
    root, pipe = tiny
    run = BackgroundRun.start(root, "data/dataset.toml", {"wait": {"fail": True}}, pipeline=pipe)
    final = run.wait(180)
    assert final.status == "failed" and final.returncode == 1
    f = final.failed
    assert (f["stage"], f["cell"], f["line"]) == ("wait", 4, "assert not fail, 'the hull data is corrupt'"), f
    assert f["notebook"] == f"reports/{run.run_id}/02_wait.ipynb" and (root / f["notebook"]).exists()
    assert "AssertionError: the hull data is corrupt" in f["error"]
    assert "stage 'wait' failed" in final.error and "Traceback" not in "\n".join(final.log_tail)
    assert [s["status"] for s in final.stages] == ["finished", "failed"]
    assert final.stages[1]["cell"] == 4


def test_stop_records_the_run_interrupted_and_leaves_no_partial_notebook(tiny):
    root, pipe = tiny
    # started as a JupyterLab button starts it: from a kernel that ignores SIGINT between cells (which a child inherits)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = BackgroundRun.start(root, "data/dataset.toml", {"wait": {"seconds": 600.0}}, pipeline=pipe)
    finally:
        signal.signal(signal.SIGINT, before)
    _watch(run, lambda s: (c := s.current) is not None and c["stage"] == "wait" and c["cell"] == 3)
    assert list((root / "reports" / run.run_id).glob(".*.partial.ipynb")), "the stage writes as it goes"
    final = run.stop()
    assert final.status == "interrupted" and final.returncode == 130, final   # interrupted, not killed
    assert "Traceback" not in "\n".join(final.log_tail) and "never retrieved" not in "\n".join(final.log_tail)
    assert [s["status"] for s in final.stages] == ["finished", "interrupted"]
    assert not list((root / "reports" / run.run_id).glob(".*.partial.ipynb"))
    record = read_json(root / "runs" / run.run_id / "run.json")
    assert record["status"] == "interrupted" and record["stages"][1]["status"] == "interrupted"
    assert mlflow_client(root).get_run(record["mlflow_run_id"]).info.status == "KILLED"
    shown = run_seatrial(root, "runs")
    assert shown.returncode == 0 and "interrupted" in shown.stdout


def test_bad_input_is_refused_before_any_process_starts(tiny):
    root, pipe = tiny
    with pytest.raises(ParameterError, match="n must be at least 0; got -1"):
        BackgroundRun.start(root, "data/dataset.toml", {"count": {"n": -1}}, pipeline=pipe)
    with pytest.raises(ParameterError, match="finite"):
        BackgroundRun.start(root, "data/dataset.toml", {"wait": {"seconds": float("inf")}}, pipeline=pipe)
    with pytest.raises(LaunchError, match="no such stage; the stages are: count, wait"):
        BackgroundRun.start(root, "data/dataset.toml", from_stage="train", pipeline=pipe)
    with pytest.raises(LaunchError, match="does not exist"):
        BackgroundRun.start(root, "data/nope.toml", pipeline=pipe)
    assert not (root / "runs").exists() and not (root / ".seatrial" / "launch").exists()
    cli = run_seatrial(root, "run", "--config", "data/dataset.toml", "--pipeline", str(pipe), "--run-id", "../elsewhere")
    assert cli.returncode == 1 and "is not a run id" in cli.stderr and "Traceback" not in cli.stderr
