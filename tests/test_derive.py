"""Serving-time derivation of model inputs: no training/serving skew on a real pipeline run, per-row errors, a plain dataset."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pyarrow as pa

from seatrial.derive import DeriveError, Deriver, model_categories
from seatrial.request import RequestSchema
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
    # as the model server takes them: bodies checked by the request schema, derived from the checked columns (no pandas)
    schema = RequestSchema.for_deriver(deriver)
    body = records.to_json(orient="records", date_format="iso", date_unit="ns").encode()
    as_checked = deriver.derive(schema.parse(body, "application/json"))
    table = pa.Table.from_pandas(records.assign(time=pd.to_datetime(records["time"], utc=True)), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w: w.write_table(table)
    as_arrow = deriver.derive(schema.parse(sink.getvalue().to_pybytes(), "application/vnd.apache.arrow.stream"))
    assert as_checked.errors == {} == as_arrow.errors and len(as_checked.rows) == len(as_arrow.rows) == len(test)
    assert np.array_equal(as_checked.matrix, as_json.matrix, equal_nan=True)   # the same values, the same bits
    assert np.array_equal(as_arrow.matrix, as_frame.matrix, equal_nan=True)
    diffs = {
        "DataFrame records, inputs DataFrame": booster.predict(as_frame.inputs, num_threads=1),
        "DataFrame records, matrix": booster.predict(as_frame.matrix, num_threads=1),
        "JSON records, matrix": booster.predict(as_json.matrix, num_threads=1),
        "checked JSON body, matrix": booster.predict(as_checked.matrix, num_threads=1),
        "checked Arrow body, matrix": booster.predict(as_arrow.matrix, num_threads=1),
    }
    for how, served in diffs.items():
        largest = float(np.max(np.abs(served - stored)))
        print(f"{how}: largest |served - stored| over {len(stored):,} test rows = {largest:.3g}")
        assert largest <= 1e-9, how
    one = deriver.derive(json.loads(records.iloc[[17]].to_json(orient="records", date_format="iso", date_unit="ns"))[0])
    assert abs(booster.predict(one.matrix, num_threads=1)[0] - stored[17]) <= 1e-9
    # one record alone, as the server gets it: the same bits as its row in the batch (the one-point paths of sample_grid
    # and days_since_drydock against the vectorised ones), on rows spread over the test set
    sent = json.loads(body)
    for i in np.linspace(0, len(sent) - 1, 40).astype(int).tolist():
        alone = deriver.derive(schema.parse(json.dumps(sent[i]).encode(), "application/json"))
        assert alone.errors == {} and alone.rows.tolist() == [0]
        assert np.array_equal(alone.matrix[0], as_checked.matrix[i], equal_nan=True), i


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


def test_checked_unknown_vessels_fail_their_own_rows(sample_model):
    "From checked columns (the server's path), unknown ids fail their rows with the message the raw-record path gives, "
    "alone and in a batch long enough to look ids up once per distinct id."
    _, deriver, predictions, raw = sample_model
    schema = RequestSchema.for_deriver(deriver)
    kept = predictions["row_id"].to_numpy()[:100]   # rows ingest kept: every value in range
    records = raw.iloc[kept][deriver.fields].assign(time=lambda d: d["time"].astype(str)).to_dict("records")
    for i in (3, 50, 51): records[i]["vessel_id"] = "NOPE404" if i != 51 else 404
    checked = schema.parse(json.dumps(records).encode(), "application/json")
    assert checked.problems == {} and len(checked.rows) == 100
    served, direct = deriver.derive(checked), deriver.derive(records)
    assert list(served.errors) == list(direct.errors) == [3, 50, 51]
    assert served.errors[3] == direct.errors[3] and '"404" is not in the entities table' in served.errors[51]   # ids are text
    assert "'vessel_id'" in served.errors[3] and "NOPE404" in served.errors[3] and "entities table" in served.errors[3]
    assert served.rows.tolist() == direct.rows.tolist() and np.array_equal(served.matrix, direct.matrix, equal_nan=True)
    alone = deriver.derive(schema.parse(json.dumps(records[51]).encode(), "application/json"))
    assert alone.rows.tolist() == [] and alone.errors == {0: served.errors[51]}
    lenient = Deriver(deriver.config, deriver.features, deriver.categorical, deriver.categories, unknown_entity="missing")
    ghost = lenient.derive(checked)
    assert ghost.errors == {} and ghost.inputs.loc[[3, 50, 51], ["vessel_type", "dwt_t", "admiralty"]].isna().all(axis=None)
    with pytest.raises(DeriveError, match="lacks field"):
        deriver.derive(RequestSchema.from_config(deriver.config, deriver.fields[:-1]).parse(b'{}', "application/json"))


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
    schema = RequestSchema.for_deriver(deriver)   # the server's path: checked records, no entity, no grid
    checked = schema.parse(json.dumps(quakes[features].to_dict("records")).encode(), "application/json")
    assert checked.problems == {} and np.array_equal(deriver.derive(checked).matrix, out.matrix)
    one = deriver.derive(schema.parse(json.dumps(quakes[features].iloc[3].to_dict()).encode(), "application/json"))
    assert np.array_equal(one.matrix[0], out.matrix[3])
    bad = deriver.derive([{"depth": 10, "stations": "many", "lat": -20.0, "long": 180.0}, {"depth": 10, "stations": 5, "lat": -20.0}])
    assert list(bad.rows) == [] and set(bad.errors) == {0, 1}
    assert "'stations'" in bad.errors[0] and "'long'" in bad.errors[1]
    assert bad.inputs.shape == (0, 4)


def test_checked_one_record_as_in_a_batch(sample_model):
    "One checked record alone (the server's shortest path) gives its row of the batch, bit for bit: known ids, an unknown "
    "id under unknown_entity='missing', a null id, a time outside the grid; an unknown id under 'error' stays a row error."
    _, deriver, predictions, raw = sample_model
    schema = RequestSchema.for_deriver(deriver)
    kept = predictions["row_id"].to_numpy()[:30]
    records = raw.iloc[kept][deriver.fields].assign(time=lambda d: d["time"].astype(str)).to_dict("records")
    records[4]["vessel_id"], records[5]["vessel_id"], records[6]["time"] = "NOPE404", None, "2031-01-01T00:00:00Z"
    lenient = Deriver(deriver.config, deriver.features, deriver.categorical, deriver.categories, unknown_entity="missing")
    for d in (deriver, lenient):
        checked = schema.parse(json.dumps(records).encode(), "application/json")
        batch = d.derive(checked)
        position = checked.rows.tolist()   # request position of each checked row
        at = {position[p]: k for k, p in enumerate(batch.rows.tolist())}
        errors = {position[p]: e for p, e in batch.errors.items()}
        for i, record in enumerate(records):
            one = schema.parse(json.dumps(record).encode(), "application/json")
            if i not in position:   # refused by the request checks already (a null id): never derived
                assert len(one.rows) == 0 and one.problems
                continue
            alone = d.derive(one)
            if i in errors:
                assert alone.rows.tolist() == [] and alone.errors == {0: errors[i]} and alone.matrix.shape == (0, len(d.features))
                continue
            assert alone.errors == {} and alone.rows.tolist() == [0] and alone.matrix.dtype == np.float64
            assert np.array_equal(alone.matrix[0], batch.matrix[at[i]], equal_nan=True), (d.unknown_entity, i)
        assert list(errors) == ([4] if d is deriver else []) and (4 in at) == (d is lenient)
    with pytest.raises(ValueError):   # the entity attributes a record's row views are never written
        next(iter(deriver._attrs.values()))[0] = 0
