"""seatrial.compiled_trees where the compiled trees cannot be had: no C compiler, OpenMP allowing fewer threads than asked,
a library that breaks on a batch. LightGBM answers in each case, with the same values, and says why."""
from __future__ import annotations

import numpy as np
import pytest

from seatrial import compiled_trees as ct


@pytest.fixture(scope="module")
def booster():
    import lightgbm as lgb
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2_000, 5)); X[rng.random(X.shape) < 0.05] = np.nan
    y = np.nan_to_num(X[:, 0]) * 2 - np.nan_to_num(X[:, 2])
    return lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 40), X


def test_without_a_compiler_lightgbm_answers_and_says_why(booster, tmp_path, monkeypatch):
    b, X = booster
    monkeypatch.setenv("PATH", str(tmp_path))   # no gcc on it
    ct.toolchain.cache_clear()
    try:
        bp = ct.BatchPredictor(b).prepare(tmp_path / "compiled", "ef" * 32, lambda: X[:200])
    finally: ct.toolchain.cache_clear()
    assert bp.state == "lightgbm" and bp.trees is None
    assert bp.reason.startswith("no C compiler: gcc is not on the PATH"), bp.reason
    assert bp.describe() == {"state": "lightgbm", "by": "lightgbm", "reason": bp.reason}
    assert np.array_equal(bp.predict(X, 2), b.predict(X)) and not list(tmp_path.glob("compiled/*"))


def test_fewer_threads_than_asked_and_a_failing_library(booster, tmp_path):
    b, X = booster
    try: ct.toolchain()
    except ct.CompileError as e: pytest.fail(f"this test needs gcc and tl2cgen ({e}): .ci/run installs gcc")
    bp = ct.BatchPredictor(b).prepare(tmp_path, "ef" * 32, lambda: X[:200])
    assert bp.state == "compiled", bp.reason
    assert np.array_equal(bp.predict(X, 64), b.predict(X))   # more threads than OpenMP gives: as many as it gives
    class Broken:   # a library failing on a batch (it should not): that batch and the later ones go to LightGBM
        path = bp.trees.path
        def predict(self, X, threads): raise RuntimeError("segment violation in predict\nmore detail")
    bp.trees = Broken()
    assert np.array_equal(bp.predict(X, 2), b.predict(X))
    assert (bp.state, bp.trees) == ("lightgbm", None)
    assert bp.reason == "the compiled trees failed on a batch: segment violation in predict"
