"""Tests of the demo-fleet generator (seatrial.fleet) on small data."""
import tomllib

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from global_land_mask import globe

from seatrial.fleet import (FAULT_SHARES, TELEMETRY_COLUMNS, VESSEL_COLUMNS, WEATHER_VARIABLES, FleetError, compute_fuel,
                            generate_demo, generate_fleet, make_vessels, make_weather)


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(4000, seed=11)


def test_deterministic_by_seed(fleet):
    again = generate_fleet(4000, seed=11)
    pd.testing.assert_frame_equal(fleet.telemetry, again.telemetry)
    pd.testing.assert_frame_equal(fleet.faults, again.faults)
    xr.testing.assert_identical(fleet.weather, again.weather)
    assert not fleet.telemetry.equals(generate_fleet(4000, seed=12).telemetry)


def test_clean_data_does_not_depend_on_fault_rate(fleet):
    other = generate_fleet(4000, seed=11, fault_rate=0.0)
    assert other.faults.empty and len(other.telemetry) == 4000
    dup = np.sort(fleet.faults.row_id[fleet.faults.kind == "duplicate"].to_numpy())
    ok = np.setdiff1d(np.arange(len(fleet.telemetry)), fleet.faults.row_id)
    pd.testing.assert_frame_equal(fleet.telemetry.iloc[ok].reset_index(drop=True),
                                  other.telemetry.iloc[ok - np.searchsorted(dup, ok)].reset_index(drop=True))


def test_columns_and_dtypes(fleet):
    t = fleet.telemetry
    assert list(t.columns) == TELEMETRY_COLUMNS
    assert str(t.time.dt.tz) == "UTC"
    assert pd.api.types.is_string_dtype(t.vessel_id)
    assert all(pd.api.types.is_float_dtype(t[c]) for c in TELEMETRY_COLUMNS[2:])
    assert list(fleet.vessels.columns[:10]) == VESSEL_COLUMNS
    assert set(fleet.vessels.vessel_type) == {"container", "bulk_carrier", "tanker"}
    # 15-minute telemetry per vessel
    clean = t.drop(index=fleet.faults.row_id)
    assert clean.groupby("vessel_id").time.diff().dropna().min() == pd.Timedelta("15min")


def test_clean_positions_at_sea(fleet):
    clean = fleet.telemetry.drop(index=fleet.faults.row_id).dropna(subset=["lat", "lon"])
    assert not globe.is_land(clean.lat.to_numpy(), clean.lon.to_numpy()).any()


def _rows(vessel, speeds, when="2024-03-02", draught=None):
    n = len(speeds)
    return pd.DataFrame({"vessel_id": [vessel.vessel_id] * n, "time": pd.Timestamp(when, tz="UTC"), "sog_kn": speeds,
                         "heading_deg": 0.0, "draught_m": draught or vessel.design_draught_m,
                         "wind_u": 0.0, "wind_v": 0.0, "hs_m": 0.0, "current_u": 0.0, "current_v": 0.0})


def test_fuel_rises_with_speed_and_is_plausible():
    ves = make_vessels(9, "2024-01-01", "2024-12-31", seed=3).assign(drydocks="2024-03-01")
    for _, v in ves.iterrows():
        f = compute_fuel(_rows(v, [6.0, 9.0, 12.0, 15.0]), ves, seed=None)
        assert f.fuel_t_day.is_monotonic_increasing
    blk = ves[ves.vessel_type == "bulk_carrier"].iloc[0]
    assert 20 < compute_fuel(_rows(blk, [12.0]), ves, seed=None).fuel_t_day[0] < 35


def test_fouling_resets_at_drydock():
    ves = make_vessels(3, "2024-01-01", "2024-12-31", seed=3).assign(drydocks="2023-01-01;2024-06-01")
    v = ves.iloc[0]
    f = compute_fuel(pd.concat([_rows(v, [15.0], w) for w in ["2024-05-31", "2024-06-01"]], ignore_index=True), ves, seed=None)
    assert f.fuel_t_day[0] > f.fuel_t_day[1] * 1.05


def test_weather_dims_and_attrs(fleet):
    w = fleet.weather
    assert list(w.sizes) == ["time", "lat", "lon"] and sorted(w.data_vars) == sorted(WEATHER_VARIABLES)
    assert all(str(w[v].dtype) == "float32" for v in w.data_vars)
    assert w.attrs["Conventions"] == "CF-1.8" and w.hs_m.attrs["standard_name"] == "sea_surface_wave_significant_height"


def test_faults_recorded(fleet):
    f, t = fleet.faults, fleet.telemetry
    assert set(f.kind) == set(FAULT_SHARES)
    assert 0.01 < f.row_id.nunique() / len(t) < 0.025
    assert f.row_id.between(0, len(t) - 1).all()
    dropout = f[f.kind == "dropout"]
    assert all(np.isnan(t.at[r, c]) for r, c in zip(dropout.row_id, dropout.column))
    bad = f[f.kind == "position_out_of_range"].row_id
    assert ((t.lat[bad].abs() > 90) | (t.lon[bad].abs() > 180)).all()


def test_bad_arguments():
    with pytest.raises(FleetError, match="at least 500 rows"): generate_fleet(10)
    with pytest.raises(FleetError, match=r"between 0 and 0\.2"): generate_fleet(1000, fault_rate=0.9)
    with pytest.raises(FleetError, match="n_vessels"): make_vessels(0, "2024-01-01", "2024-02-01")


def test_make_weather_is_smooth():
    w = make_weather("2024-02-01", "2024-02-05", seed=1)
    u = w.wind_u.values
    assert np.corrcoef(u[:, 1:].ravel(), u[:, :-1].ravel())[0, 1] > 0.8


def test_generate_demo_writes_every_file(tmp_path):
    paths = generate_demo(tmp_path / "demo", n_rows=3000, seed=2, fault_rate=0.02)
    assert set(paths) == {"telemetry", "vessels", "weather", "faults", "config"}
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "dataset.toml", "faults.parquet", "telemetry.parquet", "vessels.csv", "weather.zarr"]
    t = pd.read_parquet(paths["telemetry"])
    assert list(t.columns) == TELEMETRY_COLUMNS
    assert list(pd.read_csv(paths["vessels"]).columns) == VESSEL_COLUMNS
    f = pd.read_parquet(paths["faults"])
    assert f.row_id.max() < len(t) and list(f.columns[:2]) == ["row_id", "kind"]
    w = xr.open_zarr(paths["weather"])
    assert sorted(w.data_vars) == sorted(WEATHER_VARIABLES) and w.sizes["time"] > 1
    cfg = tomllib.loads(paths["config"].read_text())
    assert cfg["table"]["target"] == "fuel_t_day" and "shaft_power_kw" not in cfg["table"]["features"]
    assert cfg["entities"]["columns"] == ["vessel_type", "dwt_t", "design_draught_m"]
    assert cfg["grid"]["variables"] == WEATHER_VARIABLES
    assert set(cfg["regimes"]) == {"vessel", "speed_band", "sea_state", "region", "month"}
    assert cfg["checks"]["max_regime_loss_vs_baseline"] == 0.10 and cfg["ingest"]["max_rejected_fraction"] == 0.05
    assert 0.75 < (t.time < pd.Timestamp(cfg["split"]["cutoff"], tz="UTC")).mean() < 0.85
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]  # no temp files left


def test_generate_demo_config_loads_with_dataset_module(tmp_path):
    dataset = pytest.importorskip("seatrial.dataset")
    paths = generate_demo(tmp_path, n_rows=1000, seed=0)
    cfg = dataset.load_config(paths["config"])
    assert cfg.table.target == "fuel_t_day"
