"""Serving-time derivation of model inputs: no training/serving skew on a real pipeline run, per-row errors, a plain dataset."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seatrial.derive import DeriveError, Deriver, model_categories
from seatrial.train import booster_categorical

from conftest import write_quakes


def _run(root):
    "The one run folder of a project (features, train and evaluate outputs)."
    runs = [p.parent.parent for p in sorted((root / "runs").glob("*/evaluate/predictions.parquet"))]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def sample_model(sample_base):
    "The sample run's booster, its deriver from the raw-data config, its stored predictions and the raw telemetry."
    import lightgbm as lgb
    run = _run(sample_base)
    model_file = run / "train" / "model.txt"
    booster = lgb.Booster(model_file=str(model_file))
    categorical = booster_categorical(booster)
    deriver = Deriver.from_config(sample_base / "data" / "sample" / "dataset.toml", booster.feature_name(), categorical,
                                  model_categories(model_file, categorical))
    predictions = pd.read_parquet(run / "evaluate" / "predictions.parquet")
    raw = pd.read_parquet(sample_base / "data" / "sample" / "telemetry.parquet")
    return booster, deriver, predictions, raw


def test_no_training_serving_skew(sample_model):
    "Derived from the raw telemetry fields only, the test rows' predictions equal the evaluate stage's stored ones."
    booster, deriver, predictions, raw = sample_model
    test = predictions[predictions["split"] == "test"]
    assert len(test) > 1000
    assert deriver.fields == ["time", "vessel_id", "lat", "lon", "stw_kn", "sog_kn", "heading_deg", "draught_m", "trim_m"]
    records = raw.iloc[test["row_id"].to_numpy()][deriver.fields]   # row_id is the row's position in the raw file
    stored = test["pred"].to_numpy()
    as_frame = deriver.derive(records)
    assert as_frame.errors == {}
    assert list(as_frame.inputs.columns) == booster.feature_name()
    # as JSON would bring them: ISO timestamps with a zone, one dict per record
    as_json = deriver.derive(json.loads(records.to_json(orient="records", date_format="iso", date_unit="ns")))
    assert as_json.errors == {}
    diffs = {
        "DataFrame records, inputs DataFrame": booster.predict(as_frame.inputs, num_threads=1),
        "DataFrame records, matrix": booster.predict(as_frame.matrix, num_threads=1),
        "JSON records, matrix": booster.predict(as_json.matrix, num_threads=1),
    }
    for how, served in diffs.items():
        largest = float(np.max(np.abs(served - stored)))
        print(f"{how}: largest |served - stored| over {len(stored):,} test rows = {largest:.3g}")
        assert largest <= 1e-9, how
    one = deriver.derive(json.loads(records.iloc[[17]].to_json(orient="records", date_format="iso", date_unit="ns"))[0])
    assert abs(booster.predict(one.matrix, num_threads=1)[0] - stored[17]) <= 1e-9


def test_unknown_vessel_is_a_row_error(sample_model):
    "An unknown vessel id fails its own row with a message naming the field; the other rows are answered."
    booster, deriver, _, raw = sample_model
    records = raw.iloc[:3][deriver.fields].assign(time=lambda d: d["time"].astype(str)).to_dict("records")
    records[1]["vessel_id"] = "NOPE404"
    out = deriver.derive(records)
    assert list(out.rows) == [0, 2] and list(out.errors) == [1]
    assert "'vessel_id'" in out.errors[1] and "NOPE404" in out.errors[1] and "entities table" in out.errors[1]
    assert np.isfinite(booster.predict(out.matrix, num_threads=1)).all()
    lenient = Deriver(deriver.config, deriver.features, deriver.categorical, deriver.categories, unknown_entity="missing")
    ghost = lenient.derive(records[1])
    assert ghost.errors == {}
    assert ghost.inputs[["vessel_type", "dwt_t", "design_draught_m", "admiralty", "days_since_drydock"]].isna().all(axis=None)
    with pytest.raises(DeriveError, match="unknown_entity"):
        Deriver(deriver.config, deriver.features, deriver.categorical, deriver.categories, unknown_entity="guess")


def test_dataset_without_entities_or_grid(tmp_path):
    "R's quakes: the record is the model's input columns, returned in model order."
    config = write_quakes(tmp_path / "quakes")
    quakes = pd.read_csv(tmp_path / "quakes" / "quakes.csv")
    features = ["depth", "stations", "lat", "long"]
    deriver = Deriver.from_config(config, features)
    assert deriver.fields == features
    shuffled = quakes[["long", "mag", "stations", "depth", "lat"]]   # other order, an extra column: ignored
    out = deriver.derive(shuffled)
    assert out.errors == {}
    assert np.array_equal(out.matrix, quakes[features].to_numpy(dtype=float))
    assert list(out.inputs.columns) == features
    bad = deriver.derive([{"depth": 10, "stations": "many", "lat": -20.0, "long": 180.0}, {"depth": 10, "stations": 5, "lat": -20.0}])
    assert list(bad.rows) == [] and set(bad.errors) == {0, 1}
    assert "'stations'" in bad.errors[0] and "'long'" in bad.errors[1]
    assert bad.inputs.shape == (0, 4)
