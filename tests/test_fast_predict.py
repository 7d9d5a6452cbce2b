"""One row by LightGBM's single-row C API: the same bits as `booster.predict` (regression on the demo fleet, a binary
classifier), one FastConfig per thread, freed with its predictor; the server's one-record path end to end."""
from __future__ import annotations

import gc
import json
import threading

import numpy as np
import pandas as pd
import pytest

from seatrial.derive import Deriver, model_categories
from seatrial.model_server import Served, single_row_predictor
from seatrial.request import RequestSchema
from seatrial.sail import _booster_class
from seatrial.train import booster_categorical


@pytest.fixture(scope="module")
def fleet_model(fleet_base):
    "The first demo run's booster (as the server loads it), its deriver, its stored test predictions and the raw telemetry."
    run = sorted((fleet_base / "runs").glob("*/evaluate/predictions.parquet"))[0].parent.parent
    model_file = run / "train" / "model.txt"
    booster = _booster_class()(model_str=model_file.read_text())
    categorical = booster_categorical(booster)
    deriver = Deriver.from_config(fleet_base / "data" / "demo" / "dataset.toml", booster.feature_name(), categorical,
                                  model_categories(model_file, categorical))
    predictions = pd.read_parquet(run / "evaluate" / "predictions.parquet")
    raw = pd.read_parquet(fleet_base / "data" / "demo" / "telemetry.parquet")
    return booster, deriver, predictions[predictions["split"] == "test"], raw


def test_regression_one_row_same_bits(fleet_model):
    "200 demo test records, each alone through the server's path: the single-row answer is booster.predict's, bit for bit."
    booster, deriver, test, raw = fleet_model
    one_row = single_row_predictor(booster)
    assert one_row is not None and one_row.ncol == booster.num_feature()
    schema = RequestSchema.for_deriver(deriver)
    served = Served(None, booster, deriver, schema, "", one_row=one_row)   # score reads only booster, deriver, one_row
    records = raw.iloc[test["row_id"].to_numpy()[np.linspace(0, len(test) - 1, 200).astype(int)]][deriver.fields]
    sent = json.loads(records.to_json(orient="records", date_format="iso", date_unit="ns"))
    batch = deriver.derive(schema.parse(json.dumps(sent).encode(), "application/json"))
    assert batch.errors == {} and len(batch.rows) == 200
    expected = booster.predict(batch.matrix)
    for i, record in enumerate(sent):
        checked = schema.parse(json.dumps(record).encode(), "application/json")
        rows, values, errors, d = served.score(checked)
        assert errors == {} and rows.tolist() == [0] and values.dtype == np.float64 and values.shape == (1,)
        assert np.array_equal(d.matrix[0], batch.matrix[i], equal_nan=True), i   # one record derived as in a batch
        assert values[0] == booster.predict(d.matrix)[0] == expected[i], i           # and predicted with the same bits
    # rows with missing values and categories training never saw take the same branches as in booster.predict
    odd = batch.matrix[:20].copy()
    odd[::2, ::3] = np.nan
    for row in odd: assert one_row(row)[0] == booster.predict(row[None, :])[0]
    with pytest.raises(ValueError, match="one row of"): one_row(batch.matrix[:2])


def test_classifier_one_row_same_bits():
    "A binary classifier (numeric and categorical inputs, missing values): the single-row answer is the probability of "
    "class 1 that booster.predict gives, bit for bit; multiclass keeps booster.predict."
    import lightgbm as lgb
    rng = np.random.default_rng(7)
    n = 3000
    X = np.column_stack([rng.normal(size=n), rng.uniform(0, 10, size=n), rng.integers(0, 5, size=n).astype(float)])
    y = ((X[:, 0] + 0.3 * X[:, 1] - (X[:, 2] == 3) + rng.normal(scale=0.5, size=n)) > 1.5).astype(int)
    X[rng.random(n) < 0.1, 1] = np.nan
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[2]), num_boost_round=30)
    one_row = single_row_predictor(booster)
    assert one_row is not None
    rows = np.vstack([X[:200], [[np.nan, np.nan, np.nan], [0.0, 5.0, 9.0]]])   # all missing; a category never seen
    expected = booster.predict(rows, num_threads=1)
    assert ((expected > 0) & (expected < 1)).all()   # probabilities, not raw scores
    got = np.concatenate([one_row(r) for r in rows])
    assert np.array_equal(got, expected)
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    multi = lgb.train({**params, "objective": "multiclass", "num_class": 3}, lgb.Dataset(X, y3), num_boost_round=5)
    assert single_row_predictor(multi) is None
    assert single_row_predictor(object()) is None   # not a booster: nothing to call, booster.predict it is


def test_one_config_per_thread_freed_with_the_predictor(fleet_model):
    "Threads predicting at once each get their own FastConfig and the same answers; dropping the predictor frees them."
    booster = fleet_model[0]
    one_row = single_row_predictor(booster)
    rows = np.random.default_rng(3).normal(size=(300, booster.num_feature())) * 10
    expected = booster.predict(rows)
    results, failures = {}, []
    def work(k: int, predict) -> None:
        try: results[k] = np.concatenate([predict(r) for r in rows])
        except Exception as e: failures.append(e)
    threads = [threading.Thread(target=work, args=(k, one_row)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    del threads
    assert failures == [] and all(np.array_equal(v, expected) for v in results.values()) and len(results) == 4
    handles = one_row._handles
    assert len(handles) == 1 + 4   # the load-time check's thread, and one for each of the four
    free = one_row._free
    del one_row
    gc.collect()
    assert not free.alive and handles == []
    assert np.array_equal(booster.predict(rows), expected)   # the booster is untouched
