"""A stage's key takes only the config sections it reads; stage HTML needs no network. Real `seatrial` runs on R's quakes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import PIPELINE, copy_pipeline, mlflow_client, run_seatrial, write_quakes

from seatrial.core import hash_path, read_json
from seatrial.runner import config_sections, kernel_env
from seatrial.stage import declared_parameters

READS = {   # what each of seatrial's stages reads of the dataset config (the spec of issue 8)
    "01_ingest": ["table", "columns", "entities", "grid", "ingest"],
    "02_features": ["table", "columns", "entities", "grid", "features", "split", "regimes"],
    "03_train": ["table", "columns", "entities", "grid", "features", "split", "baseline"],
    "04_evaluate": ["table", "columns", "entities", "grid", "features", "split", "regimes", "baseline", "checks"],
    "05_explain": ["table", "columns", "entities", "grid", "features"],
}


@pytest.fixture(scope="module")
def quakes_sections(tmp_path_factory):
    "A finished run on R's quakes data, with a private copy of seatrial's stages (other work may change the originals)."
    root = tmp_path_factory.mktemp("sections")
    config, pipeline = write_quakes(root / "data"), copy_pipeline(root / "stages")
    proc = run_seatrial(root, "run", "--config", str(config), "--pipeline", str(pipeline), "-q")
    assert proc.returncode == 0, proc.stderr
    return root, config, pipeline, proc.stdout.strip()


def _run(root: Path, config: Path, pipeline: Path, *args: str) -> tuple[str, dict[str, dict]]:
    proc = run_seatrial(root, "run", "--config", str(config), "--pipeline", str(pipeline), "-q", *args)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    return run_id, {s["stage"]: s for s in read_json(root / "runs" / run_id / "run.json")["stages"]}


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_seatrial_stages_declare_what_they_read():
    for stage, sections in READS.items():
        assert config_sections(declared_parameters(PIPELINE / f"{stage}.ipynb")["config"].help) == sections, stage


def test_stage_kernels_wait_passively_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert kernel_env()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert kernel_env()["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_checks_change_reuses_ingest_features_and_train(quakes_sections):
    root, config, pipeline, first = quakes_sections
    before = {s["stage"]: s for s in read_json(root / "runs" / first / "run.json")["stages"]}
    _edit(config, "target_max = 8.0", "target_max = 9.0\n# widened by hand")
    run_id, stages = _run(root, config, pipeline, "--from", "evaluate")
    assert {s: r["status"] for s, r in stages.items()} == {
        "ingest": "cached", "features": "cached", "train": "cached", "evaluate": "finished", "explain": "finished"}
    assert all(stages[s]["key"] == before[s]["key"] for s in ("ingest", "features", "train"))
    assert stages["evaluate"]["key"] != before["evaluate"]["key"]   # it reads [checks]: re-run even without --from
    # MLflow still records the raw files evaluate read: the config as it is now, and the table [table] names
    client = mlflow_client(root)
    parent = read_json(root / "runs" / run_id / "run.json")["mlflow_run_id"]
    exp = client.get_experiment_by_name("quakes").experiment_id
    child = next(r for r in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
                 if r.data.tags["seatrial.stage"] == "evaluate")
    raw = {d.dataset.name: d.dataset.digest for d in child.inputs.dataset_inputs}
    assert raw["config"] == hash_path(config)[:32] and raw["table"] == hash_path(config.parent / "quakes.csv")[:32]


def test_a_comment_changes_nothing_and_a_table_change_reruns_ingest(quakes_sections):
    root, config, pipeline, _ = quakes_sections
    config.write_text(config.read_text() + "\n# reviewed on the 3rd\n")
    proc = run_seatrial(root, "run", "--config", str(config), "--pipeline", str(pipeline), "-q")
    assert proc.returncode == 0 and "nothing changed" in proc.stderr, proc.stderr
    _edit(config, 'features = ["depth", "stations", "lat", "long"]', 'features = ["stations", "depth", "lat", "long"]')
    _, stages = _run(root, config, pipeline)
    assert stages["ingest"]["status"] == "finished"


def _external_urls(html: str) -> list[str]:
    "What a browser would fetch to show the page: URLs in scripts, in <link> and in any src attribute."
    scripts = re.findall(r"<script\b.*?</script>", html, flags=re.S)
    return ([u for s in scripts for u in re.findall(r"https?://[^\s'\"<>)]+", s)]
            + re.findall(r"<link\b[^>]*href=[\"']?(https?://[^\s'\">]+)", html)
            + re.findall(r"\bsrc=[\"']?(https?://[^\s'\">]+)", html))


def test_stage_html_needs_no_network(quakes_sections):
    root, _, _, first = quakes_sections
    pages = {p.stem: p.read_text() for p in sorted((root / "reports" / first).glob("*.html"))}
    assert list(pages) == list(READS)
    for stage, html in pages.items():
        assert _external_urls(html) == [], stage
        assert "require.js" not in html and "MathJax" not in html, stage
        assert "<table" in html, stage                                   # the outputs are there: tables...
    for stage in ("04_evaluate", "05_explain"):                           # ...and figures, embedded
        assert pages[stage].count("data:image/png;base64,") >= 2, stage
