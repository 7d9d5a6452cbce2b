"""A project folder moved or copied (cp -a, mv: Binder, a colleague) keeps working, and keeps nothing of the old folder."""
from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from conftest import run_seatrial
from seatrial.audit.store import open_version
from seatrial.review import collect_evidence, verify


def _texts(root: Path) -> dict[str, str]:
    "Every record seatrial keeps, as text: run.json, manifests, .seatrial/*.json and every text cell of the MLflow store."
    out = {str(p): p.read_text() for pattern in ("runs/*/run.json", "runs/*/*/manifest.json", ".seatrial/**/*.json")
           for p in root.glob(pattern)}
    con = sqlite3.connect(root / "mlflow.db")
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in con.execute(f"SELECT * FROM {table}"):
            out |= {f"mlflow.db:{table}:{i}:{v[:80]}": v for i, v in enumerate(row) if isinstance(v, str)}
    con.close()
    return out


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


GRID = 'train.grid=[{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]'   # as `sample_base` ran


def test_a_copied_project_runs_reviews_and_keeps_no_path_of_the_old_folder(sample_base, tmp_path):
    original, copy = tmp_path / "original", tmp_path / "moved"
    subprocess.run(["cp", "-a", str(sample_base), str(original)], check=True)
    # brought up to date where it is (reuses everything unless seatrial's own code changed since `sample_base` ran)
    proc = run_seatrial(original, "run", "--config", "data/sample/dataset.toml", "-q", "-p", GRID)
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    away = original.with_name("original-away")
    os.rename(original, away)   # the original is gone while the copy works: nothing may read or write there
    hidden = sample_base.with_name(sample_base.name + "-away")
    os.rename(sample_base, hidden)   # and the folder its first run was made in
    before = _snapshot(away)
    try:
        proc = run_seatrial(copy, "run", "--config", "data/sample/dataset.toml", "-q", "-p", GRID)
        assert proc.returncode == 0, proc.stderr
        assert "nothing changed: every stage is reused" in proc.stderr, proc.stderr   # the cache hits
        shown = run_seatrial(copy, "show", proc.stdout.strip())
        assert shown.returncode == 0 and "RMSE" in shown.stdout, shown.stderr
        ev = collect_evidence(copy, "fleet", "1")
        assert not ev.changed and all(Path(p).is_relative_to(copy) for p in ev.paths.values()), ev.paths
        data, pinned = open_version(copy, "fleet", "1")
        assert pinned.digest == ev.digest and len(data.frame) > 1000
        assert verify(copy) == []
        old = [k for k, text in _texts(copy).items() if any(str(p) in text for p in (sample_base, hidden, original, away))]
        assert not old, old[:5]
        assert _snapshot(away) == before   # nothing written into the old folder
    finally:
        os.rename(hidden, sample_base)
