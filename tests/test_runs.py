"""The runs table and the comparison of runs (seatrial.runs), on a real project: the 40k-row sample run once (`sample_base`),
then again from train with another validation share, plus failed, interrupted and dead run records as the runner writes them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import PIPELINE, mlflow_client

from seatrial.core import SeatrialError, read_json, write_json
from seatrial.dataset import load_config
from seatrial.display import vocabulary
from seatrial.evaluate import regime_rows
from seatrial.review import collect_evidence, decide
from seatrial.runner import RUNTIME_PARAMS, RunOptions, project_lock, run_pipeline
from seatrial.runs import (
    COLUMNS,
    CompareError,
    RunNotFoundError,
    compare,
    runs_html,
    runs_table,
    stage_params,
)

GRID = [{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]   # as `sample_base` ran
CONFIG = "data/sample/dataset.toml"


@pytest.fixture(scope="module")
def two_runs(sample_base, tmp_path_factory) -> tuple[Path, str, str]:
    """(project, first run, second run): a copy of `sample_base` run again from train with valid_fraction 0.3, through
    `run_pipeline` itself (ingest and features reused)."""
    root = tmp_path_factory.mktemp("runs") / "project"
    shutil.copytree(sample_base, root, symlinks=True)
    (first,) = [p.parent.name for p in (root / "runs").glob("*/run.json")]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = run_pipeline(RunOptions(root, root / CONFIG, PIPELINE, params={"train": {"grid": GRID, "valid_fraction": 0.3}},
                                         from_stage="train", progress=False), say=lambda _: None)
    assert result.status == "finished"
    return root, first, result.run_id


def _at(minutes: int) -> str: return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _record(root: Path, base: str, run: str, status: str, last: dict, minutes: int) -> None:
    "A run.json as the runner writes it: ingest and features reused from run `base`, then `last`."
    reused = [{k: s[k] for k in ("stage", "key", "manifest", "params")}
              | {"status": "cached", "seconds": 0.02, "started": _at(0), "ended": _at(0), "cached_from": base, "notebook": None}
              for s in read_json(root / "runs" / base / "run.json")["stages"] if s["stage"] in ("ingest", "features")]
    write_json(root / "runs" / run / "run.json", {
        "run_id": run, "status": status, "dataset": "fleet", "source": "workbench", "config": CONFIG, "started": _at(minutes),
        "seconds": 4.2, "stages": [*reused, last], "mlflow_run_id": None, "model_version": None, "pid": 2 ** 22 + 7,
        "host": "this"})


def _reused(root: Path, run: str) -> bool:
    return any(s["status"] == "cached" for s in read_json(root / "runs" / run / "run.json")["stages"])


def _train(status: str, **kw) -> dict:
    return {"stage": "train", "status": status, "seconds": 3.1, "started": _at(0), "ended": _at(0), "key": "k" * 64,
            "params": {"grid": GRID, "valid_fraction": 0.2, "folds": 0, "seed": 0, "objective": "auto"}} | kw


def test_the_table_shows_every_run_newest_first_with_metric_version_and_review(two_runs):
    root, first, second = two_runs
    _record(root, first, "fleet-failed", "failed", _train(
        "failed", notebook="reports/fleet-failed/03_train.ipynb", error="ValueError: no rows left", cell=7,
        cell_line="model = train_model(train_df)"), 1)
    _record(root, first, "fleet-stopped", "interrupted", _train("interrupted", notebook=None), 2)
    _record(root, first, "fleet-dead", "running", {"stage": "train", "status": "running", "started": _at(3)}, 3)
    df = runs_table(root)
    assert list(df.columns) == list(COLUMNS)
    assert list(df.run) == ["fleet-dead", "fleet-stopped", "fleet-failed", second, first]
    # a record left `running` by a runner that is gone reads as interrupted (as `seatrial runs` will record it)
    assert list(df.status) == ["interrupted", "interrupted", "failed", "finished", "finished"]
    assert list(df.source) == ["workbench", "workbench", "workbench", "cli", "cli"]
    assert df.error[2] == "stage 'train' failed at cell 7: ValueError: no rows left" and df.error[3] == ""
    # (the second run reuses ingest and features unless seatrial's own code changed since `sample_base` ran)
    again = "3 ran, 2 reused" if _reused(root, second) else "5 ran"
    assert list(df.stages) == ["2 reused, 1 running", "2 reused, 1 interrupted", "2 reused, 1 failed", again, "5 ran"]
    for i, run in ((3, second), (4, first)):
        overall = read_json(root / "runs" / run / "evaluate" / "metrics.json")["overall"]
        assert (df.metric[i], df.value[i], df.unit[i]) == ("RMSE", overall["rmse"], "t/day")
    assert df.value[:3].isna().all() and list(df.metric[:3]) == ["", "", ""]
    assert list(df.model_version) == [None, None, None, "2", "1"]
    assert list(df.review) == ["", "", "", "awaits review", "awaits review"]
    assert df.started.is_monotonic_decreasing and str(df.started.dt.tz) == "UTC"
    assert len(runs_table(root, limit=2)) == 2

    # the review status is the ledger's: an approved version becomes the champion, a rejected one says so
    decide(root, "fleet", "1", "approve", "ana", {"approver"}, "even across regimes", collect_evidence(root, "fleet", "1").digest)
    decide(root, "fleet", "2", "reject", "ana", {"approver"}, "no better", collect_evidence(root, "fleet", "2").digest)
    assert list(runs_table(root).review[3:]) == ["rejected", "champion"]

    # while its runner holds the project's lock, a running record is running
    with project_lock(root, "fleet-dead", say=lambda _: None):
        assert runs_table(root).status[0] == "running"

    page = runs_html(runs_table(root))
    for text in ("Test metric", "RMSE 3.", " t/day", "ValueError: no rows left", "champion", "2 reused, 1 failed", " UTC"):
        assert text in page, text
    for run in ("fleet-failed", "fleet-stopped", "fleet-dead"): shutil.rmtree(root / "runs" / run)


def test_the_table_never_imports_mlflow(two_runs):
    root = two_runs[0]
    code = ("import sys; from seatrial.runs import runs_table; df = runs_table(sys.argv[1]); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'; print(len(df))")
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 2


def test_compare_shows_the_differing_parameter_metrics_regimes_and_links(two_runs):
    root, first, second = two_runs
    c = compare(root, first, second)
    assert c.runs == [first, second]
    assert c.params.index.tolist() == [("train", "valid_fraction")]
    assert c.params.loc[("train", "valid_fraction")].tolist() == [0.2, 0.3]
    assert c.all_params.loc[("train", "grid"), second] == GRID
    assert ("evaluate", "max_loss_vs_champion") in c.all_params.index
    assert not set(c.all_params.index.get_level_values("parameter")) & set(RUNTIME_PARAMS)

    # metrics: labelled with units, one column per run, the difference to the first
    overall = {run: read_json(root / "runs" / run / "evaluate" / "metrics.json") for run in (first, second)}
    assert list(c.metrics.columns) == [first, second, f"Δ {second}"]
    assert c.metrics.index[:2].tolist() == ["RMSE (t/day)", "MAE (t/day)"] and c.metrics.index[-1] == "test rows"
    a, b = (overall[r]["overall"]["rmse"] for r in (first, second))
    assert c.metrics.loc["RMSE (t/day)"].tolist() == pytest.approx([a, b, b - a])

    # by regime: the config's regimes in its order, each one's levels in their order
    cfg = load_config(root / CONFIG)
    assert list(dict.fromkeys(c.by_regime.regime)) == list(cfg.regimes)
    for regime in cfg.regimes:
        rows = c.by_regime[c.by_regime.regime == regime]
        expected = regime_rows(overall[first], regime)
        assert rows.level.tolist() == expected.level.astype(str).tolist()
        assert rows[first].tolist() == pytest.approx(expected.rmse.tolist(), nan_ok=True)
        assert rows[f"Δ {second}"].tolist() == pytest.approx((rows[second] - rows[first]).tolist(), nan_ok=True)

    # links: a reused stage's notebook is the run's that made it; MLflow runs in the local UI's form, read back from MLflow
    assert c.links.loc[second, "ingest"] == f"reports/{first if _reused(root, second) else second}/01_ingest.ipynb"
    assert c.links.loc[second, "train"] == f"reports/{second}/03_train.ipynb"
    assert all((root / p).exists() for p in c.links.loc[second, ["ingest", "features", "train", "evaluate", "explain"]])
    client = mlflow_client(root)
    for run in (first, second):
        mlflow_id = read_json(root / "runs" / run / "run.json")["mlflow_run_id"]
        experiment = client.get_run(mlflow_id).info.experiment_id
        assert c.links.loc[run, "mlflow_run_id"] == mlflow_id
        assert c.links.loc[run, "mlflow_url"] == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{mlflow_id}"

    page = c._repr_html_()
    for text in ("<code>valid_fraction</code>", "RMSE (t/day) by regime", " t/day", "Speed band"):
        assert text in page, text
    assert (f"reused from run {first}" in page) == _reused(root, second)


def test_the_figures_are_labelled_with_regimes_metric_and_units(two_runs):
    root, first, second = two_runs
    c = compare(root, first, second)
    vocab = vocabulary(load_config(root / CONFIG))
    fig = c.regime_figure()
    labels = [vocab.regime_label(r) for r in c.by_regime.regime.unique()]
    assert [ax.get_ylabel() for ax in fig.axes] == [label[:1].upper() + label[1:] for label in labels]
    assert fig.axes[-1].get_xlabel() == "RMSE (t/day)"
    first_panel = c.by_regime[c.by_regime.regime == c.by_regime.regime.iloc[0]]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == first_panel.level.tolist()
    assert [len(bars.get_paths()) for bars in fig.axes[0].collections] == [len(first_panel)] * 2   # the runs side by side
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [first, second]

    fig = c.residual_figure()
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Residual, observed − predicted (t/day)", "Test rows")
    n = f"{int(c.metrics.loc['test rows', first]):,}"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{first} ({n} rows)", f"{second} ({n} rows)"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_parameters_of_older_records_come_from_the_executed_notebooks(two_runs):
    root, _, second = two_runs
    record = read_json(root / "runs" / second / "run.json")
    older = record | {"stages": [{k: v for k, v in s.items() if k != "params"} for s in record["stages"]]}
    for s in record["stages"]:   # executed here, or reused from the first run (its notebook, through cached_from)
        assert stage_params(root, older, s["stage"]) == stage_params(root, record, s["stage"]) == s["params"], s["stage"]


def test_runs_that_cannot_be_compared_are_refused_with_the_reason(two_runs):
    root, first, _ = two_runs
    with pytest.raises(CompareError, match="two or more runs"): compare(root, first)
    with pytest.raises(CompareError, match="named twice"): compare(root, first, first)
    with pytest.raises(RunNotFoundError, match=r"no run 'fleet-nope'.*`seatrial runs` lists"): compare(root, first, "fleet-nope")
    with pytest.raises(RunNotFoundError, match="not a run id"): compare(root, first, "../../etc")
    _record(root, first, "fleet-broken", "failed", _train("failed", notebook=None, error="kernel died"), 5)
    try:
        with pytest.raises(CompareError, match="it failed in stage 'train', before its evaluation finished"):
            compare(root, first, "fleet-broken")
    finally:
        shutil.rmtree(root / "runs" / "fleet-broken")
    assert issubclass(CompareError, SeatrialError) and issubclass(RunNotFoundError, SeatrialError)
