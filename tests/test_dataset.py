"""Bad inputs to seatrial.dataset: each fails with its own error class and a message saying what and where."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seatrial.core import SeatrialError, hash_path
from seatrial.dataset import (
    ConfigError,
    DataFileError,
    EntitiesSpec,
    GridSpec,
    TableSpec,
    digest_frame,
    load_config,
    open_grid,
    read_entities,
    read_table,
)

DATA = Path(__file__).parent / "data"

CONFIG = """
name = "tiny"
task = "regression"

[table]
path = "tiny.csv"
time = "time"
entity = "ship"
lat = "lat"
lon = "lon"
target = "fuel"
features = ["stw_kn"]

[columns.stw_kn]
min = 0
max = 30

[split]
test_fraction = 0.25

[regimes]
speed = { column = "stw_kn", bins = [0, 10, 30] }
"""


def spec(path: Path) -> TableSpec:
    return TableSpec(path, "csv", "time", "ship", "lat", "lon", "fuel", ["stw_kn"])


def write(folder: Path, name: str, content: str | bytes) -> Path:
    p = folder / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def read_fails(path: Path, *fragments: str, fmt: str = "csv") -> str:
    """read_table fails with DataFileError naming the file and each fragment; the file is untouched."""
    before = hash_path(path)
    with pytest.raises(DataFileError) as e:
        read_table(TableSpec(path, fmt, "time", "ship", "lat", "lon", "fuel", ["stw_kn"]))
    msg = str(e.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    assert hash_path(path) == before
    return msg


# --- config -------------------------------------------------------------------------------------


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.csv").write_bytes((DATA / "tiny.csv").read_bytes())
    (tmp_path / "dataset.toml").write_text(CONFIG)
    return tmp_path


def test_config_loads(cfg_dir: Path):
    cfg = load_config(cfg_dir / "dataset.toml")
    assert cfg.table.path == (cfg_dir / "tiny.csv").resolve()
    assert cfg.table.format == "csv"
    assert cfg.split.test_fraction == 0.25 and cfg.split.cutoff is None
    assert cfg.regimes["speed"].bins == [0.0, 10.0, 30.0]
    assert cfg.model_features == ["stw_kn"]
    assert cfg.ingest.max_rejected_fraction == 0.05 and cfg.ingest.reject_on_land is False


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ('features = ["stw_kn"]', 'features = "stw_kn"', ["'table.features'", "expected a list of strings"]),
        ('features = ["stw_kn"]', 'features = ["stw_kn", "fuel"]', ["'table.features'", "includes the target"]),
        ('task = "regression"', 'task = "ranking"', ["'task'", "'regression' or 'classification'"]),
        ('task = "regression"', "", ["missing required key 'task'"]),
        ('target = "fuel"', "", ["missing required key 'table.target'"]),
        ("max = 30", "maxx = 30", ["unknown key 'columns.stw_kn.maxx'", "did you mean 'max'"]),
        ('name = "tiny"', 'name = "tiny"\ncolour = "blue"', ["unknown key 'colour'"]),
        ("max = 30", "max = -1", ["'columns.stw_kn.max'", "min < max"]),
        ("max = 30", 'max = "30"', ["'columns.stw_kn.max'", "'30' (str); expected a number"]),
        ("[0, 10, 30]", "[0, 30, 10]", ["'regimes.speed.bins'", "strictly increasing"]),
        ("[0, 10, 30]", "[5]", ["'regimes.speed.bins'", "at least two"]),
        ('"tiny.csv"', '"nope.csv"', ["'table.path'", "does not exist"]),
        ('"tiny.csv"', '"tiny.dat"', ["'table.path'", "does not exist"]),
        ("test_fraction = 0.25", "test_fraction = 1.5", ["'split.test_fraction'", "between 0 and 1"]),
        ("test_fraction = 0.25", 'cutoff = "June"', ["'split.cutoff'", "ISO date"]),
        ('lon = "lon"', "", ["'table.lon'", "set both lat and lon"]),
        ("[split]", '[ingest]\nreject_on_land = "yes"\n[split]', ["'ingest.reject_on_land'", "true or false"]),
        ('column = "stw_kn"', 'column = "speed"', ["'regimes.speed.column'", "not a column of the features table"]),
    ],
)
def test_bad_config(cfg_dir: Path, old: str, new: str, fragments: list[str]):
    assert old in CONFIG
    p = cfg_dir / "dataset.toml"
    p.write_text(CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg
    for f in fragments:
        assert f in msg, msg
    assert issubclass(ConfigError, SeatrialError)


def test_config_unknown_format(cfg_dir: Path):
    (cfg_dir / "tiny.dat").write_bytes((cfg_dir / "tiny.csv").read_bytes())
    p = cfg_dir / "dataset.toml"
    p.write_text(CONFIG.replace('"tiny.csv"', '"tiny.dat"'))
    with pytest.raises(ConfigError, match="set format"):
        load_config(p)
    p.write_text(CONFIG.replace('"tiny.csv"', '"tiny.dat"\nformat = "csv"'))
    assert load_config(p).table.format == "csv"


def test_config_not_toml(cfg_dir: Path):
    p = write(cfg_dir, "bad.toml", "name = \n")
    with pytest.raises(ConfigError, match="not a valid UTF-8 TOML file"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(cfg_dir / "missing.toml")


# --- tables -------------------------------------------------------------------------------------


def test_read_tiny_csv_keeps_extra_columns():
    df = read_table(spec(DATA / "tiny.csv"))
    assert df.columns[0] == "row_id"
    assert df.row_id.tolist() == list(range(len(df)))
    assert "comment" in df.columns  # extra columns are kept, unused


def test_empty_and_header_only(tmp_path: Path):
    read_fails(write(tmp_path, "empty.csv", ""), "empty")
    read_fails(write(tmp_path, "blank.csv", "\n\n"), "empty")
    read_fails(write(tmp_path, "header.csv", "time,ship,lat,lon,stw_kn,fuel\n"), "header", "no data rows")


def test_ragged_rows(tmp_path: Path):
    ok = "time,ship,lat,lon,stw_kn,fuel\n2025-01-01T00:00:00Z,a,1,2,3,4\n"
    read_fails(write(tmp_path, "long.csv", ok + "2025-01-01T00:15:00Z,a,1,2,3,4,5\n"), "ragged row at line 3", "7 fields")
    read_fails(write(tmp_path, "short.csv", ok + ok.split("\n")[1] + "\n2025-01-01T00:30:00Z,a,1,2\n"),
               "ragged row at line 4", "4 fields", "header has 6")


def test_unclosed_quote(tmp_path: Path):
    text = 'time,ship,lat,lon,stw_kn,fuel\n2025-01-01T00:00:00Z,"a,1,2,3,4\n2025-01-01T00:15:00Z,b,1,2,3,4\n'
    read_fails(write(tmp_path, "quote.csv", text), "line 2", "unclosed quote")


def test_wrong_encodings(tmp_path: Path):
    text = "time,ship,lat,lon,stw_kn,fuel\n2025-01-01T00:00:00Z,Sjöfart,1,2,3,4\n"
    msg = read_fails(write(tmp_path, "latin1.csv", text.encode("latin-1")), "not UTF-8", "byte offset 53",
                     "line 2", "re-save it as UTF-8")
    assert "0xf6" in msg
    read_fails(write(tmp_path, "utf16.csv", text.encode("utf-16")), "UTF-16", "re-save it as UTF-8")
    read_fails(write(tmp_path, "utf16le.csv", text.encode("utf-16-le")), "not UTF-8", "UTF-16")
    read_fails(write(tmp_path, "ascii16.csv", "time,ship\n".encode("utf-16-le")), "NUL byte at byte offset 1",
               "UTF-16 without a byte-order mark")
    # a UTF-8 byte-order mark is fine
    df = read_table(spec(write(tmp_path, "bom.csv", text.encode("utf-8-sig"))))
    assert df.ship.tolist() == ["Sjöfart"]


def test_missing_columns(tmp_path: Path):
    msg = read_fails(write(tmp_path, "m.csv", "time,ship,latitude,lon,stw,fuel\n2025-01-01,a,1,2,3,4\n"),
                     "missing required column(s) ['lat', 'stw_kn']", "the file has ['time', 'ship', 'latitude'")
    assert "'lat' ~ 'latitude'" in msg
    read_fails(write(tmp_path, "semi.csv", "time;ship;lat;lon;stw_kn;fuel\n2025;a;1;2;3;4\n"), "another separator")


def test_duplicate_header_and_reserved(tmp_path: Path):
    read_fails(write(tmp_path, "dup.csv", "time,ship,lat,lon,stw_kn,fuel,fuel\n2025,a,1,2,3,4,5\n"),
               "['fuel'] more than once")
    read_fails(write(tmp_path, "rid.csv", "row_id,time,ship,lat,lon,stw_kn,fuel\n0,2025,a,1,2,3,4\n"), "reserved")


def test_parquet(tmp_path: Path):
    df = pd.read_csv(DATA / "tiny.csv")
    df.to_parquet(tmp_path / "t.parquet")
    got = read_table(TableSpec(tmp_path / "t.parquet", "parquet", "time", "ship", "lat", "lon", "fuel", ["stw_kn"]))
    assert len(got) == len(df)
    read_fails(write(tmp_path, "bad.parquet", b"PAR1 this is not parquet"), "not a readable Parquet file",
               fmt="parquet")
    df.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    read_fails(tmp_path / "empty.parquet", "no rows", fmt="parquet")
    read_fails(write(tmp_path, "zero.parquet", b""), "empty", fmt="parquet")


def test_entities(tmp_path: Path):
    p = write(tmp_path, "e.csv", "ship,dwt_t\na,1\nb,2\n")
    assert read_entities(EntitiesSpec(p, ["dwt_t"], "ship")).dwt_t.tolist() == [1, 2]
    with pytest.raises(DataFileError, match=r"missing required column\(s\) \['beam_m'\]"):
        read_entities(EntitiesSpec(p, ["dwt_t", "beam_m"], "ship"))
    p = write(tmp_path, "e2.csv", "ship,dwt_t\na,1\na,2\n")
    with pytest.raises(DataFileError, match=r"\['a'\] appear more than once"):
        read_entities(EntitiesSpec(p, ["dwt_t"], "ship"))


def test_grid(tmp_path: Path):
    import xarray as xr

    ds = xr.Dataset(
        {"hs_m": (("time", "lat", "lon"), np.ones((2, 2, 2), "float32")), "depth": (("lat", "lon"), np.ones((2, 2)))},
        coords={"time": pd.date_range("2025-01-01", periods=2), "lat": [0.0, 1.0], "lon": [0.0, 1.0]},
    )
    ds.to_zarr(tmp_path / "g.zarr", zarr_format=2, consolidated=True)
    assert open_grid(GridSpec(tmp_path / "g.zarr", ["hs_m"])).hs_m.dims == ("time", "lat", "lon")
    with pytest.raises(DataFileError, match=r"lacks variable\(s\) \['sst_c'\]; it has \['depth', 'hs_m'\]"):
        open_grid(GridSpec(tmp_path / "g.zarr", ["hs_m", "sst_c"]))
    with pytest.raises(DataFileError, match="'depth' has dims"):
        open_grid(GridSpec(tmp_path / "g.zarr", ["depth"]))
    ds.rename(lat="latitude").to_zarr(tmp_path / "g2.zarr", zarr_format=2, consolidated=True)
    with pytest.raises(DataFileError, match=r"lacks dim\(s\) \['lat'\]"):
        open_grid(GridSpec(tmp_path / "g2.zarr", ["hs_m"]))
    with pytest.raises(DataFileError, match=r"not a readable NetCDF file|needs h5py"):
        open_grid(GridSpec(write(tmp_path, "bad.nc", b"not netcdf"), ["hs_m"]))


def test_grid_netcdf(tmp_path: Path):
    pytest.importorskip("h5py")
    import xarray as xr

    ds = xr.Dataset({"hs_m": (("time", "lat", "lon"), np.ones((1, 1, 1)))},
                    coords={"time": pd.date_range("2025-01-01", periods=1), "lat": [0.0], "lon": [0.0]})
    ds.to_netcdf(tmp_path / "g.nc", engine="h5netcdf")
    assert open_grid(GridSpec(tmp_path / "g.nc", ["hs_m"])).hs_m.shape == (1, 1, 1)


def test_digest_frame():
    df = read_table(spec(DATA / "tiny.csv"))
    assert digest_frame(df) == digest_frame(df.copy())
    assert digest_frame(df) != digest_frame(df.iloc[::-1])
    assert digest_frame(df) != digest_frame(df.astype({"stw_kn": "float32"}))
