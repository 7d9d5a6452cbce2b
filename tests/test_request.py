"""Request validation for the model server (seatrial.request): real bodies as bytes, JSON, Arrow IPC and Parquet."""
from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import QUAKES_TOML, REPO

from seatrial.dataset import load_config
from seatrial.request import (MAX_BYTES, MalformedBodyError, RequestError, RequestSchema, RowsRefusedError,
                              TooLargeError, UnsupportedMediaTypeError, WrongShapeError)

JSON, ARROW, PARQUET = "application/json", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"
SAMPLE = REPO / "data" / "sample" / "dataset.toml"
FIELDS = ["time", "vessel_id", "lat", "lon", "stw_kn", "sog_kn", "heading_deg", "draught_m", "trim_m"]
GOOD = {"time": "2024-03-01T12:00:00Z", "vessel_id": "CNT001", "lat": 51.9, "lon": 4.1, "stw_kn": 12.0,
        "sog_kn": 12.4, "heading_deg": 270.0, "draught_m": 11.5, "trim_m": 0.4}


@pytest.fixture(scope="module")
def schema() -> RequestSchema:
    return RequestSchema.from_config(load_config(SAMPLE), FIELDS)


def refusal(fn) -> RequestError:
    "The RequestError `fn` raises (the test fails when it raises none)."
    with pytest.raises(RequestError) as info: fn()
    return info.value


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w: w.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_body(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def table_of(rows: list[dict]) -> pa.Table:
    "Records as columns, as a client would send them: every key any record has, null where a record lacks it."
    return pa.table({k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)})


def only(checked, row: int) -> list[tuple]:
    return [(p["field"], p["problem"]) for p in checked.problems[row]]


def test_schema_from_the_sample_config(schema):
    r = schema.rules
    assert schema.fields == FIELDS
    assert [r[f].kind for f in FIELDS] == ["time", "id"] + ["number"] * 7
    assert (r["lat"].min, r["lat"].max, r["lon"].min, r["lon"].max) == (-90, 90, -180, 180)
    assert (r["stw_kn"].min, r["stw_kn"].max, r["stw_kn"].unit) == (0, 30, "kn")
    assert (r["trim_m"].min, r["trim_m"].max) == (-5, 8)
    assert not r["time"].nullable and not r["vessel_id"].nullable and not r["lat"].nullable and r["stw_kn"].nullable
    assert (schema.max_rows, schema.max_bytes) == (10_000, 32 * 2**20)
    other = RequestSchema.from_config(load_config(SAMPLE), FIELDS, max_rows=5, max_bytes=100)
    assert (other.max_rows, other.max_bytes) == (5, 100)


def test_a_dataset_without_entities_or_grid_takes_the_model_inputs(tmp_path):
    "R's quakes: the record is the model's input columns; longitudes east of 180 (0..360) pass, the declared depth range holds."
    (tmp_path / "quakes.csv").write_text("lat,long,depth,mag,stations\n-20.42,181.62,562,4.8,41\n")
    (tmp_path / "dataset.toml").write_text(QUAKES_TOML)
    s = RequestSchema.from_config(load_config(tmp_path / "dataset.toml"), ["depth", "stations", "lat", "long"])
    assert [s.rules[f].kind for f in s.fields] == ["number"] * 4
    body = json.dumps([{"depth": 562, "stations": 41, "lat": -20.42, "long": 181.62},
                       {"depth": 701, "stations": 41, "lat": -20.42, "long": 361.0}]).encode()
    c = s.parse(body, JSON)
    assert c.rows.tolist() == [0] and c.columns["long"].tolist() == [181.62]
    assert only(c, 1) == [("depth", "701 is above the highest allowed, 700 km"), ("long", "361 is above the highest allowed, 360")]


def test_one_good_record_typed_for_the_deriver(schema):
    c = schema.parse(json.dumps({**GOOD, "time": "2024-03-01T13:30:00+01:30"}).encode(), "application/json; charset=utf-8")
    assert (c.n, c.rows.tolist(), c.problems) == (1, [0], {})
    assert c.columns["time"].dtype == np.dtype("datetime64[ns]") and c.columns["time"][0] == np.datetime64("2024-03-01T12:00:00")
    assert c.columns["lat"].dtype == np.float64 and c.columns["vessel_id"].dtype == object
    frame = c.frame()
    assert list(frame.columns) == FIELDS and str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert c.report() == {"rows_received": 1, "rows_refused": 0, "fields": {}, "rows": {}}


def test_a_bad_row_never_takes_the_good_rows_answers(schema):
    "10,000 rows with one bad, as JSON, as an Arrow stream and as Parquet: 9,999 kept, the bad one named with its field."
    rows = [{**GOOD, "lat": float(i % 80), "sog_kn": float(i % 30)} for i in range(10_000)]
    rows[4321] = {**rows[4321], "sog_kn": 31.5}
    table = table_of(rows)
    for body, kind in ((json.dumps(rows).encode(), JSON), (arrow_body(table), ARROW), (parquet_body(table), PARQUET),
                       (parquet_body(table), "application/x-parquet")):
        c = schema.parse(body, kind)
        assert (c.n, len(c.rows), c.refused) == (10_000, 9_999, [4321]), kind
        assert only(c, 4321) == [("sog_kn", "31.5 is above the highest allowed, 30 kn")]
        assert 4321 not in c.rows and c.columns["lat"][4321] == float(4322 % 80)   # the rows after it keep their values
        assert c.report()["rows"] == {"4321": [{"field": "sog_kn", "problem": "31.5 is above the highest allowed, 30 kn"}]}


def test_a_body_over_the_limit_is_refused_before_parsing(schema):
    e = refusal(lambda: schema.parse(b"[" + b" " * MAX_BYTES, JSON))   # not JSON either: a 422 would mean it was parsed
    assert (type(e), e.status, e.body["limit_bytes"], e.body["received_bytes"]) == (TooLargeError, 413, MAX_BYTES, MAX_BYTES + 1)
    assert "more than the 33,554,432" in e.body["error"]
    e = refusal(lambda: schema.check_size(100_000_000))   # a 100 MB Content-Length, refused before the body is read
    assert e.status == 413 and e.body["received_bytes"] == 100_000_000
    small = RequestSchema.from_config(load_config(SAMPLE), FIELDS, max_bytes=50)
    assert refusal(lambda: small.parse(b"\x00" * 51, ARROW)).status == 413


def test_too_many_rows_is_413_in_every_format(schema):
    rows = [GOOD] * 10_001
    table = table_of(rows)
    for body, kind in ((json.dumps(rows).encode(), JSON), (arrow_body(table), ARROW), (parquet_body(table), PARQUET)):
        e = refusal(lambda body=body, kind=kind: schema.parse(body, kind))
        assert (type(e), e.status, e.body["limit_rows"], e.body["received_rows"]) == (TooLargeError, 413, 10_000, 10_001), kind
    assert schema.parse(json.dumps([GOOD] * 10_000).encode(), JSON).n == 10_000


def test_malformed_bodies_say_where(schema):
    e = refusal(lambda: schema.parse(b'[{"time": "2024-03-01T12:00:00Z",\n  "lat": 51.9,,}]', JSON))
    assert (type(e), e.status, e.body["line"], e.body["column"], e.body["position"]) == (MalformedBodyError, 422, 2, 15, 48)
    assert "not valid JSON" in e.body["error"] and "line 2, column 15" in e.body["error"]
    e = refusal(lambda: schema.parse(json.dumps(GOOD).encode()[:-5], JSON))
    assert e.status == 422 and e.body["line"] == 1
    e = refusal(lambda: schema.parse(b'{"vessel_id": "\xff\xfe"}', JSON))
    assert e.status == 422 and "UTF-8" in e.body["error"]
    arrow = arrow_body(table_of([GOOD]))
    e = refusal(lambda: schema.parse(arrow[: len(arrow) // 2], ARROW))
    assert (type(e), e.status) == (MalformedBodyError, 422) and "Arrow IPC stream" in e.body["error"]
    e = refusal(lambda: schema.parse(json.dumps(GOOD).encode(), PARQUET))
    assert (type(e), e.status) == (MalformedBodyError, 422) and "Parquet" in e.body["error"]


def test_wrong_content_type_is_415(schema):
    for kind in ("text/csv", "application/x-www-form-urlencoded", "", None):
        e = refusal(lambda kind=kind: schema.parse(json.dumps(GOOD).encode(), kind))
        assert (type(e), e.status) == (UnsupportedMediaTypeError, 415)
        assert "application/json" in e.body["error"] and JSON in e.body["accepted"]
    assert "'text/csv' is not read here" in refusal(lambda: schema.parse(b"{}", "text/csv")).body["error"]
    assert schema.parse(json.dumps(GOOD).encode(), "Application/JSON; charset=UTF-8").rows.tolist() == [0]


def test_wrong_shape(schema):
    for body in (b'"hello"', b"42", b"null", b"[]", b'{"records": [3]}'):
        e = refusal(lambda body=body: schema.parse(body, JSON).require_some())
        assert e.status == 422 and isinstance(e, (WrongShapeError, RowsRefusedError)), body
    assert type(refusal(lambda: schema.parse(b"[]", JSON))) is WrongShapeError
    c = schema.parse(json.dumps([GOOD, 7, [1], "x"]).encode(), JSON)
    assert c.rows.tolist() == [0]
    assert [c.problems[i][0]["problem"] for i in (1, 2, 3)] == [
        "is a number, not a record (an object of fields)", "is a list, not a record (an object of fields)",
        "is text, not a record (an object of fields)"]


def test_timestamps_need_a_zone(schema):
    times = ["2024-03-01T12:00:00", "2024-03-01", "2024-03-01 12:00:00", "yesterday", 1709294400, None,
             "1066-10-14T09:00:00Z", "2024-03-01T12:00:00Z", "2024-03-01T12:00:00.5-05:00"]
    c = schema.parse(json.dumps([{**GOOD, "time": t} for t in times]).encode(), JSON)
    zone = "has no zone; send ISO 8601 with Z or an offset, e.g. 2024-03-01T12:00:00Z or 2024-03-01T13:00:00+01:00"
    assert only(c, 0) == [("time", f'"2024-03-01T12:00:00" {zone}')]
    assert only(c, 1) == [("time", f'"2024-03-01" {zone}')]
    assert only(c, 2) == [("time", f'"2024-03-01 12:00:00" {zone}')]
    assert only(c, 3) == [("time", '"yesterday" is not an ISO 8601 timestamp; send e.g. 2024-03-01T12:00:00Z')]
    assert only(c, 4) == [("time", "1709294400 is a number, not an ISO 8601 timestamp text with a zone")]
    assert only(c, 5) == [("time", "is null; every record needs it")]
    assert "outside the years 1678-2261" in only(c, 6)[0][1]
    assert c.rows.tolist() == [7, 8]
    assert np.array_equal(c.columns["time"], np.array(["2024-03-01T12:00:00", "2024-03-01T17:00:00.5"], dtype="datetime64[ns]"))


def test_nan_and_infinity_literals_are_refused(schema):
    body = (b'[{"time": "2024-03-01T12:00:00Z", "vessel_id": "CNT001", "lat": NaN, "lon": 4.1, "stw_kn": Infinity, '
            b'"sog_kn": -Infinity, "heading_deg": 270.0, "draught_m": 11.5, "trim_m": null}]')
    c = schema.parse(body, JSON)
    assert only(c, 0) == [("lat", "NaN is not a number; send null for a missing value"),
                          ("stw_kn", "Infinity is not a number; send null for a missing value"),
                          ("sog_kn", "-Infinity is not a number; send null for a missing value")]
    huge = schema.parse(json.dumps(GOOD).replace("270.0", "1e400").encode(), JSON)   # Python's json reads it as infinity
    assert only(huge, 0) == [("heading_deg", "Infinity is not a number; send null for a missing value")]
    ok = schema.parse(body.replace(b"NaN", b"51.9").replace(b"-Infinity", b"null").replace(b"Infinity", b"null"), JSON)
    assert ok.rows.tolist() == [0] and np.isnan(ok.columns["trim_m"][0]) and np.isnan(ok.columns["stw_kn"][0])   # null allowed there
    e = refusal(lambda: schema.parse(body.replace(b"NaN", b"null"), JSON).require_some())
    assert e.body["rows"]["0"][0] == {"field": "lat", "problem": "is null; every record needs it"}


def test_unknown_and_missing_fields_are_named(schema):
    rows = [{**GOOD, "stw_knots": 12.0, "note": "x"}, {k: v for k, v in GOOD.items() if k not in ("stw_kn", "lon")}, GOOD]
    c = schema.parse(json.dumps(rows).encode(), JSON)
    unknown = "is not a field of this model; the fields are " + ", ".join(FIELDS)
    assert only(c, 0) == [("stw_knots", unknown), ("note", unknown)]
    assert only(c, 1) == [("lon", "is missing; every record needs it"), ("stw_kn", "is missing; every record needs it")]
    assert c.rows.tolist() == [2]
    assert c.report()["fields"] == {"stw_knots": 1, "note": 1, "lon": 1, "stw_kn": 1}


def test_types_as_json_gives_them(schema):
    rows = [{**GOOD, "stw_kn": True}, {**GOOD, "stw_kn": "12.0"}, {**GOOD, "stw_kn": [12]}, {**GOOD, "stw_kn": 12},
            {**GOOD, "vessel_id": 7}, {**GOOD, "vessel_id": 7.5}, {**GOOD, "vessel_id": ""}, {**GOOD, "vessel_id": False}]
    c = schema.parse(json.dumps(rows).encode(), JSON)
    assert only(c, 0) == [("stw_kn", "true is true/false, not a number")]
    assert only(c, 1) == [("stw_kn", '"12.0" is text, not a number; send the number without quotes')]
    assert only(c, 2) == [("stw_kn", "[12] is a list, not a number")]
    assert only(c, 5) == [("vessel_id", "7.5 is a number, not an id (text or a whole number)")]
    assert only(c, 6) == [("vessel_id", "is empty text; send the id")]
    assert only(c, 7) == [("vessel_id", "false is true/false, not an id (text or a whole number)")]
    assert c.rows.tolist() == [3, 4]
    assert c.columns["stw_kn"].tolist() == [12.0, 12.0] and c.columns["vessel_id"].tolist() == ["CNT001", "7"]


def test_ranges_and_positions(schema):
    rows = [{**GOOD, "lat": -90.0, "lon": 180.0}, {**GOOD, "lat": 90.5}, {**GOOD, "lon": -180.01},
            {**GOOD, "stw_kn": -0.1, "draught_m": 25.5}]
    c = schema.parse(json.dumps(rows).encode(), JSON)
    assert c.rows.tolist() == [0]
    assert only(c, 1) == [("lat", "90.5 is above the highest allowed, 90 degrees_north")]
    assert only(c, 2) == [("lon", "-180.01 is below the lowest allowed, -180 degrees_east")]
    assert only(c, 3) == [("stw_kn", "-0.1 is below the lowest allowed, 0 kn"), ("draught_m", "25.5 is above the highest allowed, 25 m")]


def test_columnar_batches_report_problems_as_json_does(schema):
    rows = [GOOD, {**GOOD, "time": "2024-03-01T12:00:00", "lat": 95.0}, {**GOOD, "draught_m": float("nan")},
            {**GOOD, "trim_m": float("-inf"), "heading_deg": 400.0}, {**GOOD, "vessel_id": None}, {**GOOD, "note": "x"},
            {**GOOD, "time": "not a time"}, {**GOOD, "time": "2024-03-01T13:00:00+01:00"}, {**GOOD, "vessel_id": ""}]
    by_json = schema.parse(json.dumps(rows).encode(), JSON)
    table = table_of(rows)
    for body, kind in ((arrow_body(table), ARROW), (parquet_body(table), PARQUET)):
        c = schema.parse(body, kind)
        assert c.report() == by_json.report(), kind
        assert c.rows.tolist() == by_json.rows.tolist() == [0, 7]
        for f in FIELDS: assert np.array_equal(c.columns[f], by_json.columns[f]), (kind, f)


def test_columnar_types(schema):
    rows = [GOOD, {**GOOD, "lat": 95.0}]
    base = table_of(rows)
    stamped = base.set_column(0, "time", pa.array(pd.to_datetime([GOOD["time"]] * 2, utc=True)))
    c = schema.check_table(stamped)
    assert c.rows.tolist() == [0] and c.columns["time"][0] == np.datetime64("2024-03-01T12:00:00")
    naive = stamped.set_column(0, "time", stamped.column("time").cast(pa.timestamp("ms")))
    assert schema.check_table(naive).problems[0][0]["problem"].startswith('"2024-03-01T12:00:00" has no zone')
    texts = base.set_column(FIELDS.index("stw_kn"), "stw_kn", pa.array(["12.0", "12.0"]))
    assert schema.check_table(texts).problems[0] == [{"field": "stw_kn", "problem": '"12.0" is text, not a number; send the number without quotes'}]
    bools = base.set_column(FIELDS.index("stw_kn"), "stw_kn", pa.array([True, False]))
    assert schema.check_table(bools).problems[0][0]["problem"] == "true is true/false, not a number"
    ints = base.set_column(FIELDS.index("vessel_id"), "vessel_id", pa.array([7, 8])).set_column(
        FIELDS.index("stw_kn"), "stw_kn", pa.array([12, 13], pa.int32()))
    c = schema.check_table(ints)
    assert c.rows.tolist() == [0] and c.columns["vessel_id"].tolist() == ["7"] and c.columns["stw_kn"].tolist() == [12.0]
    dictionary = base.set_column(1, "vessel_id", base.column("vessel_id").dictionary_encode())
    assert schema.check_table(dictionary).columns["vessel_id"].tolist() == ["CNT001"]
    twice = pa.Table.from_arrays([*base.columns, base.column("lat")], names=[*base.column_names, "lat"])
    e = refusal(lambda: schema.parse(arrow_body(twice), ARROW))
    assert (type(e), e.status) == (WrongShapeError, 422) and "more than one column named 'lat'" in e.body["error"]
    missing = base.drop_columns(["lon"])
    c = schema.check_table(missing)
    assert c.rows.tolist() == [] and all(("lon", "is missing; every record needs it") in only(c, i) for i in (0, 1))
    two_chunks = pa.concat_tables([stamped.slice(0, 1), stamped.slice(1, 1)])
    assert schema.parse(arrow_body(two_chunks), ARROW).report() == schema.check_table(stamped).report()


def test_no_good_row_is_a_422_naming_rows_and_fields(schema):
    e = refusal(lambda: schema.parse(json.dumps({**GOOD, "lat": 95.0}).encode(), JSON).require_some())
    assert (type(e), e.status) == (RowsRefusedError, 422)
    assert e.body["rows"] == {"0": [{"field": "lat", "problem": "95 is above the highest allowed, 90 degrees_north"}]}
    assert e.body["error"].startswith("the record has problems") and json.loads(json.dumps(e.body)) == e.body
    e = refusal(lambda: schema.parse(json.dumps([{**GOOD, "lat": 95.0}, {**GOOD, "lon": 200}]).encode(), JSON).require_some())
    assert e.body["error"].startswith("all 2 records have problems") and set(e.body["rows"]) == {"0", "1"}


def test_openapi_matches_the_checks(schema):
    spec = schema.openapi()
    record = spec["Record"]
    assert record["required"] == FIELDS and record["additionalProperties"] is False
    assert record["properties"]["lat"] == {"type": "number", "minimum": -90.0, "maximum": 90.0, "title": "latitude",
                                           "description": "unit: degrees_north", "x-unit": "degrees_north"}
    assert record["properties"]["stw_kn"]["type"] == ["number", "null"]
    jsonschema.Draft202012Validator.check_schema(record)
    validator = jsonschema.Draft202012Validator(record, format_checker=jsonschema.FormatChecker())
    cases = [GOOD, {**GOOD, "lat": 95.0}, {**GOOD, "stw_kn": None}, {**GOOD, "lat": None}, {**GOOD, "stw_kn": True},
             {**GOOD, "stw_kn": "12"}, {**GOOD, "time": "2024-03-01T12:00:00"}, {**GOOD, "time": "2024-03-01T12:00:00+01:00"},
             {**GOOD, "note": 1}, {k: v for k, v in GOOD.items() if k != "lon"}, {**GOOD, "vessel_id": 7},
             {**GOOD, "vessel_id": ""}, {**GOOD, "heading_deg": 360.0}, {**GOOD, "heading_deg": 360.5}]
    checked = schema.parse(json.dumps(cases).encode(), JSON)
    for i, case in enumerate(cases):
        assert validator.is_valid(case) == (i in checked.rows), case
    body = spec["Records"]
    assert body["oneOf"][1]["maxItems"] == 10_000 and "33,554,432 bytes" in body["description"]
    jsonschema.validate(refusal(lambda: schema.parse(b"[]", JSON)).body, spec["RequestError"])
    jsonschema.validate(refusal(lambda: schema.parse(json.dumps({**GOOD, "lat": 95.0}).encode(), JSON).require_some()).body,
                        spec["RequestError"])


def test_checked_rows_derive_as_the_raw_records(schema):
    "The checked columns, as the deriver takes them, give the same model inputs as the raw records."
    from seatrial.derive import Deriver
    cfg = load_config(SAMPLE)
    cats = sorted(pd.read_csv(cfg.entities.path)["vessel_type"].unique())
    deriver = Deriver(cfg, cfg.model_features, ["vessel_type"], {"vessel_type": cats})
    assert RequestSchema.for_deriver(deriver).fields == deriver.fields == FIELDS
    rows = [{**GOOD, "vessel_id": v, "stw_kn": 8.0 + i} for i, v in enumerate(["CNT001", "BLK002"])]
    rows.insert(1, {**GOOD, "lat": 95.0})
    c = schema.parse(json.dumps(rows).encode(), JSON)
    served = deriver.derive(c.frame())
    direct = deriver.derive([rows[0], rows[2]])
    assert served.errors == {} and np.array_equal(served.matrix, direct.matrix, equal_nan=True)
    assert c.rows[served.rows].tolist() == [0, 2]


def test_a_json_batch_is_checked_as_each_of_its_records_alone(schema):
    "Batches are checked column by column, single records row by row: the two say the same of every row."
    cases = [GOOD, {**GOOD, "time": "2024-03-01T12:00:00", "lat": 95.0}, {**GOOD, "stw_kn": "12.0", "sog_kn": True, "x": 1},
             {**GOOD, "draught_m": float("nan"), "trim_m": None}, {k: v for k, v in GOOD.items() if k != "vessel_id"},
             {**GOOD, "time": "2024-03-01T13:00:00+01:00", "vessel_id": 7}, {**GOOD, "vessel_id": None}, 7, ["x"],
             {**GOOD, "time": 1709294400}, {**GOOD, "time": "yesterday"}, {**GOOD, "heading_deg": 2**70},
             {**GOOD, "heading_deg": 10**30}, {**GOOD, "heading_deg": 10**400}, {**GOOD, "vessel_id": ""}, {**GOOD, "time": None}, {},
             {**GOOD, "vessel_id": "\ud800"}, {**GOOD, "time": "2024-03-01T12:00:00Z\udc00"}]   # lone surrogates: JSON escapes
    rows = cases * 5   # past the size where batches are checked by column
    before = json.dumps(rows)
    batch = schema.check_records(rows)
    assert json.dumps(rows) == before   # the caller's records are left as they were
    alone = [schema.check_records([r]) for r in cases]
    for i in range(len(rows)):
        a = alone[i % len(cases)]
        assert batch.problems.get(i) == a.problems.get(0), rows[i]
        if i in batch.rows:
            j = batch.rows.tolist().index(i)
            for f in FIELDS:
                got, want = batch.columns[f][j:j + 1], a.columns[f]
                assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), (i, f)
    assert len(batch.rows) == 5 * sum(len(a.rows) for a in alone) == 10


def test_a_json_batch_of_records_only_is_read_in_one_pass_and_says_the_same(schema):
    "A batch of records only (no stray values), keys in any order: a field every record has is read in one pass; one a "
    "record lacks is read value by value; an extra field is refused. Each row is said of as the record alone is."
    reordered = dict(reversed(list(GOOD.items())))
    full = [{**reordered, "lat": float(i % 80)} for i in range(100)]
    lacking = [*full[:60], {k: v for k, v in GOOD.items() if k != "trim_m"}, *full[60:]]
    extra = [*full[:10], {**GOOD, "x": 1}, *full[10:]]
    for rows in (full, lacking, extra):
        batch = schema.check_records(rows)
        alone = [schema.check_records([r]) for r in rows]
        assert [batch.problems.get(i) for i in range(len(rows))] == [a.problems.get(0) for a in alone]
        good = [i for i, a in enumerate(alone) if len(a.rows)]
        assert batch.rows.tolist() == good
        for f in FIELDS:
            want = np.concatenate([alone[i].columns[f] for i in good])
            assert np.array_equal(batch.columns[f], want, equal_nan=want.dtype.kind == "f"), f
    assert len(schema.check_records(lacking).rows) == 100 and schema.check_records(extra).refused == [10]
