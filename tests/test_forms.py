"""The workbench's input widgets as objects: parameter forms from the stages' declarations (checked as the CLI checks), and
the dataset panel with its summary, on the shipped pipeline and the committed sample."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from conftest import PIPELINE, REPO

from seatrial.cli import _stage_params
from seatrial.display import count, percent, when
from seatrial.forms import (MAP_POINTS, DatasetPanel, DatasetSummary, ParameterForm, cli_value, dataset_summary,
                            find_configs, map_png, summary_html)
from seatrial.runner import RUNTIME_PARAMS, PipelineError, discover_stages, stage_parameters
from seatrial.stage import ParameterError, parse_assignment

SAMPLE = REPO / "data" / "sample"


def cli_message(stages, stage: str, name: str, value) -> str:
    "What `seatrial run -p stage.name=value` refuses the value with."
    with pytest.raises(ParameterError) as e:
        stage_parameters(stages, {stage: {name: value}})
    return str(e.value)


def stage_notebook(path: Path, parameters: str) -> Path:
    "A minimal stage notebook whose `parameters` cell is `parameters`."
    nb = {"cells": [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "source": parameters,
                     "outputs": [], "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def form() -> ParameterForm:
    return ParameterForm(PIPELINE)


@pytest.fixture
def custom(tmp_path) -> ParameterForm:
    "A pipeline whose stage declares every kind of parameter the shipped ones do not: bool, dict, choices, a bounded int."
    stage_notebook(tmp_path / "pipe" / "01_fit.ipynb", "\n".join([
        'config: str = ""  # the dataset config (set by the runner)',
        "flag: bool = False  # whether to shuffle",
        'mode: str = "fast"  # how to search (one of: fast, exact)',
        'note: str = ""  # a free text',
        "opts: dict = {}  # extra options",
        "k: int = 3  # neighbours (1 <= x <= 10)",
        "ratio: float = 0.5  # share kept (0 <= x <= 1)",
        "limit: int | None = None  # rows at most (None: all)"]))
    return ParameterForm(tmp_path / "pipe")


@pytest.fixture(scope="module")
def sample_copy(tmp_path_factory) -> Path:
    "A project holding a copy of the committed sample (read it, never change it)."
    root = tmp_path_factory.mktemp("forms-sample")
    shutil.copytree(SAMPLE, root / "data" / "sample")
    return root


def quakes_csv(path: Path, rows: int = 300) -> Path:
    "A small earthquake-like CSV: position, depth, stations and the magnitude to predict."
    rng = np.random.default_rng(0)
    depth = rng.integers(40, 680, rows)
    pd.DataFrame({"lat": rng.uniform(-38, -10, rows), "long": rng.uniform(165, 188, rows), "depth": depth,
                  "stations": rng.integers(10, 132, rows),
                  "mag": (4 + depth / 400 + rng.normal(0, 0.2, rows)).round(1)}).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- the form's widgets


def test_shipped_pipeline_sections_and_widgets(form):
    stages = discover_stages(PIPELINE)
    assert [s.name for s in form.stages] == [s.name for s in stages]
    assert not {name for _, name in form.fields} & set(RUNTIME_PARAMS)
    kinds = {k: type(f.input) for k, f in form.fields.items()}
    assert kinds == {("train", "grid"): widgets.Textarea, ("train", "valid_fraction"): widgets.BoundedFloatText,
                     ("train", "folds"): widgets.IntText, ("train", "seed"): widgets.IntText,
                     ("train", "objective"): widgets.Dropdown, ("evaluate", "max_loss_vs_champion"): widgets.FloatText,
                     ("explain", "dependence_features"): widgets.IntText}
    vf = form.field("train", "valid_fraction")
    assert (vf.input.min, vf.input.max, vf.input.value) == (0, 1, 0.2)
    assert vf.input.description == "valid fraction" and "share of the training rows" in vf.input.tooltip
    assert "share of the training rows held out" in vf.help.value and "allowed: greater than 0 and less than 1" in vf.help.value
    assert "(0 &lt; x &lt; 1)" not in vf.help.value   # the range is said in words, not repeated as written
    assert "allowed: -1 or at least 0" in form.field("evaluate", "max_loss_vs_champion").help.value
    assert json.loads(form.field("train", "grid").input.value) == []
    assert len(form.accordion.children) == len(stages)
    assert form.accordion.titles == ("01 · ingest — nothing to set", "02 · features — nothing to set", "03 · train",
                                     "04 · evaluate", "05 · explain")
    assert form.accordion.selected_index == 2   # the first stage with something to set is open
    assert "Every stage runs with its declared defaults" in form.status.value
    assert form.valid and form.values() == {} and form.cli_args() == [] and form.errors == {}
    assert repr(form) == f"ParameterForm({str(PIPELINE)!r}: 7 parameters of 5 stages, valid)"


def test_each_type_gets_its_widget(custom):
    f = {name: field for (_, name), field in custom.fields.items()}
    assert set(f) == {"flag", "mode", "note", "opts", "k", "ratio", "limit"}
    assert isinstance(f["flag"].input, widgets.Checkbox) and f["flag"].input.value is False
    assert isinstance(f["mode"].input, widgets.Dropdown) and f["mode"].input.options == ("fast", "exact")
    assert isinstance(f["opts"].input, widgets.Textarea) and f["opts"].input.value == "{}"
    assert isinstance(f["k"].input, widgets.BoundedIntText) and (f["k"].input.min, f["k"].input.max) == (1, 10)
    assert isinstance(f["ratio"].input, widgets.BoundedFloatText) and "allowed: at least 0 and at most 1" in f["ratio"].help.value
    assert isinstance(f["limit"].input, widgets.Text) and f["limit"].input.value == "None"   # an annotation not policed
    custom.set("fit", "flag", True)
    custom.set("fit", "mode", "exact")
    custom.set("fit", "opts", {"depth": 3, "names": ["a", "b"], "on": None})
    custom.set("fit", "limit", 5000)
    assert custom.values() == {"fit": {"flag": True, "mode": "exact", "opts": {"depth": 3, "names": ["a", "b"], "on": None},
                                       "limit": 5000}}
    with pytest.raises(ParameterError, match=r"stage 'fit': mode must be one of fast, exact; got 'slow'"):
        custom.set("fit", "mode", "slow")
    assert _stage_params(custom.cli_args()[1::2]) == custom.values()


# ---------------------------------------------------------------- checked as the CLI checks


@pytest.mark.parametrize("stage, name, value", [
    ("train", "folds", -1),                          # below its range
    ("train", "valid_fraction", 1.0),               # an open bound: a bounded box holds it, the range refuses it
    ("train", "valid_fraction", 0.0),
    ("evaluate", "max_loss_vs_champion", -0.5),     # between the alternatives (x == -1 or x >= 0)
    ("explain", "dependence_features", -2),
])
def test_invalid_values_refused_inline_with_the_cli_message(form, stage, name, value):
    expected = cli_message(form.stages, stage, name, value)
    seen = []
    form.on_change(lambda fm: seen.append(fm.valid))
    with pytest.raises(ParameterError) as e:
        form.set(stage, name, value)
    f = form.field(stage, name)
    assert str(e.value) == f.error == expected
    assert f.input.value == value                                     # left in the field, as typed
    assert "seatrial-invalid" in f.input._dom_classes and f.message.layout.display is None
    assert expected.replace("'", "&#x27;") in f.message.value
    assert not form.valid and seen == [False] and form.errors == {f"{stage}.{name}": expected}
    assert f"{stage}.{name}" in form.status.value and "to fix" in form.accordion.titles[[s.name for s in form.stages].index(stage)]
    with pytest.raises(ParameterError) as e:
        form.values()
    assert str(e.value) == expected                                   # names the field
    form.field(stage, name).reset()
    assert form.valid and "seatrial-invalid" not in f.input._dom_classes and f.message.layout.display == "none"
    assert seen == [False, True]


def test_typed_into_the_widget_as_a_person_would(form):
    "The browser sets the widget's value; the check follows at once."
    f = form.field("train", "folds")
    f.input.value = -3
    assert f.error == cli_message(form.stages, "train", "folds", -3)
    f.input.value = 4
    assert f.error is None and form.values() == {"train": {"folds": 4}}


def test_a_range_bound_is_enforced(form, custom):
    vf = form.field("train", "valid_fraction")
    with pytest.raises(ParameterError) as e:
        form.set("train", "valid_fraction", 1.5)            # the box cannot hold it: left as it was, the CLI's message
    assert str(e.value) == cli_message(form.stages, "train", "valid_fraction", 1.5)
    assert vf.input.value == 0.2 and vf.error is None
    vf.input.value = 7.0                                    # typed past the bound: the box keeps it at the bound ...
    assert vf.input.value == 1.0
    assert vf.error == cli_message(form.stages, "train", "valid_fraction", 1.0)   # ... which the open range refuses
    form.set("train", "valid_fraction", 0.35)
    assert form.values() == {"train": {"valid_fraction": 0.35}}
    with pytest.raises(ParameterError, match=r"stage 'fit': k must be at least 1 and at most 10; got 11"):
        custom.set("fit", "k", 11)
    custom.set("fit", "k", 10)                              # a closed bound is allowed
    assert custom.values() == {"fit": {"k": 10}}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_refused(form, value):
    with pytest.raises(ParameterError) as e:
        form.set("evaluate", "max_loss_vs_champion", value)
    assert "must be a finite number" in str(e.value)
    assert str(e.value) == cli_message(form.stages, "evaluate", "max_loss_vs_champion", value)
    assert not form.valid


def test_non_finite_refused_in_a_bounded_box_and_in_json(form):
    vf = form.field("train", "valid_fraction")
    vf.input.value = math.nan                                # a bounded box holds nan: refused all the same
    assert vf.error == "stage 'train': valid_fraction must be a finite number; got nan"
    vf.reset()
    grid = form.field("train", "grid")
    grid.input.value = '[{"learning_rate": Infinity}]'       # Python's JSON reader takes Infinity
    assert grid.error == cli_message(form.stages, "train", "grid", [{"learning_rate": math.inf}])
    assert grid.error == "stage 'train': grid[0]['learning_rate'] must be a finite number; got inf"


def test_json_errors_say_where(form):
    grid = form.field("train", "grid")
    grid.input.value = '[\n  {"num_leaves": 15,\n   "learning_rate" 0.1}\n]'
    assert grid.error == ("stage 'train': grid is not valid JSON: Expecting ':' delimiter at line 3, column 20; write a "
                          'JSON list, e.g. [{"num_leaves": 15}]')
    with pytest.raises(ParameterError, match="grid is not valid JSON"):
        form.values()
    grid.input.value = '{"num_leaves": 15}'                  # JSON, but not a list: the CLI's type message
    assert grid.error == cli_message(form.stages, "train", "grid", {"num_leaves": 15})
    grid.input.value = ""
    assert "grid is not valid JSON: Expecting value at line 1, column 1" in grid.error


def test_wrong_types_and_unknown_names_get_the_cli_message(form):
    for stage, name, value in [("train", "folds", 2.5), ("train", "seed", "7"), ("train", "objective", 5),
                               ("train", "folds", True), ("train", "grid", (1, 2))]:
        with pytest.raises(ParameterError) as e:
            form.set(stage, name, value)
        assert str(e.value) == cli_message(form.stages, stage, name, value)
    assert form.valid   # none of them could be held: every field is as it was
    with pytest.raises(ParameterError, match=r"stage 'train' has no parameter 'depth'; it declares: config, "):
        form.set("train", "depth", 3)
    with pytest.raises(PipelineError, match=r"\['config'\] are set by the runner"):
        form.set("train", "config", "x.toml")
    with pytest.raises(PipelineError, match=r"no stage named \['fit'\]"):
        form.set("fit", "k", 3)


# ---------------------------------------------------------------- values, command line, reset


def test_values_and_cli_args_round_trip(form):
    form.set("train", "grid", [{"num_leaves": 15, "learning_rate": 0.1, "extra_trees": True, "max_bin": None}])
    form.set("train", "valid_fraction", 0.30000000000000004)
    form.set("train", "seed", 7)
    form.set("evaluate", "max_loss_vs_champion", -1.0)       # its default: not carried
    form.set("explain", "dependence_features", 0)
    expected = {"train": {"grid": [{"num_leaves": 15, "learning_rate": 0.1, "extra_trees": True, "max_bin": None}],
                          "valid_fraction": 0.30000000000000004, "seed": 7},
                "explain": {"dependence_features": 0}}
    assert form.values() == expected
    args = form.cli_args()
    assert args[::2] == ["-p"] * 4
    back = _stage_params(args[1::2])                        # the CLI's own reading of -p
    assert back == expected
    assert [type(v) for v in back["train"].values()] == [list, float, int]
    assert form.accordion.titles[2:] == ("03 · train — 3 changed", "04 · evaluate", "05 · explain — 1 changed")
    assert "-p explain.dependence_features=0" in form.status.value
    form.reset()
    assert form.values() == {} and form.cli_args() == []


@pytest.mark.parametrize("text", ["gamma", "3", "true", "True", "None", "a b", " padded ", "x=y", "[1, 2]", "'quoted'", ""])
def test_text_values_round_trip(custom, text):
    custom.set("fit", "note", text)
    args = custom.cli_args()[1::2]
    assert len(args) == (text != "")   # "" is the default: not carried
    if not args: return
    name, value = parse_assignment(arg := args[0])
    assert name == "fit.note" and value == text and type(value) is str
    assert _stage_params([arg]) == {"fit": {"note": text}}


def test_cli_value_spells_what_parse_assignment_reads_back():
    for v in [0.1, 1e-300, -0.0, 12, True, False, None, "1e309", {"a": [1, 2.5, "x"]}, [], {}]:
        assert parse_assignment(f"s.n={cli_value(v)}")[1] == v


def test_on_change_follows_validity(form):
    seen = []
    form.on_change(lambda fm: seen.append((fm.valid, dict(fm.errors))))
    form.field("train", "folds").input.value = -1
    form.field("train", "folds").input.value = 2
    form.reset()
    assert [v for v, _ in seen] == [False, True, True]
    assert list(seen[0][1]) == ["train.folds"]


# ---------------------------------------------------------------- the dataset summary


def test_find_configs_skips_runs_reports_and_hidden_folders(tmp_path):
    for folder in ["data/a", "data/b/c", "runs/r1", "reports/x", ".seatrial/cache", "mlartifacts/1", "env", "w.zarr"]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "dataset.toml").write_text("")
    (tmp_path / "env" / "pyvenv.cfg").write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in find_configs(tmp_path)] == \
        ["data/a/dataset.toml", "data/b/c/dataset.toml"]


def test_summary_of_the_sample(sample_copy):
    config = sample_copy / "data" / "sample" / "dataset.toml"
    s = dataset_summary(config)
    raw = pd.read_parquet(SAMPLE / "telemetry.parquet")
    assert isinstance(s, DatasetSummary) and (s.name, s.task, s.config) == ("fleet", "regression", config.resolve())
    assert s.rows == len(raw) == 40_062
    assert s.time_range == (raw.time.min(), raw.time.max())
    assert [c.name for c in s.columns] == list(raw.columns)
    for c in s.columns:
        assert c.missing == pytest.approx(raw[c.name].isna().mean())
    assert s.column("draught_m").missing == 37 / 40_062
    kinds = {c.name: (c.kind, c.role, c.unit) for c in s.columns}
    assert kinds["time"] == ("time", "time", None)
    assert kinds["vessel_id"] == ("category", "entity", None)
    assert kinds["lat"] == ("number", "position", "°N")
    assert kinds["stw_kn"] == ("number", "feature", "kn")
    assert kinds["fuel_t_day"] == ("number", "target", "t/day")
    assert kinds["shaft_power_kw"] == ("number", "", "kW")
    on_globe = raw.lat.between(-90, 90) & raw.lon.between(-180, 180)
    assert s.positions == on_globe.sum() and len(s.points) == MAP_POINTS
    assert s.points.lat.between(-90, 90).all() and s.points.lon.between(-180, 180).all()
    text = summary_html(s)
    assert f"{count(40_062)} rows" in text and f"from {when(raw.time.min())} to {when(raw.time.max())}" in text
    assert 'title="stw_kn">Speed through water (kn)</td>' in text and f">{percent(37 / 40_062, 2)}</td>" in text
    png = map_png(s)
    assert png.startswith(b"\x89PNG") and map_png(s) is png


def test_summary_of_a_csv_with_text_times(tmp_path):
    (tmp_path / "obs.csv").write_text(
        "when,site,temp_c,note,y\n"
        "03/01/2024 10:00,a,1.5,ok,1\n"
        "04/01/2024 10:00,b,,fine,2\n"
        "not a time,a,2.5,,3\n"
        "31/12/2024 23:30,b,3.5,ok,4\n")
    (tmp_path / "dataset.toml").write_text(
        'name = "obs"\ntask = "regression"\n[table]\npath = "obs.csv"\ntime = { column = "when", format = "%d/%m/%Y %H:%M" }\n'
        'entity = "site"\ntarget = "y"\nfeatures = ["temp_c"]\n[columns.temp_c]\nunit = "degC"\nlabel = "water temperature"\n'
        '[split]\nby = "random"\n')
    s = dataset_summary(tmp_path / "dataset.toml")
    assert s.rows == 4 and s.unreadable_times == 1 and s.lat is None and s.points is None and map_png(s) is None
    assert s.time_range == (pd.Timestamp("2024-01-03 10:00", tz="UTC"), pd.Timestamp("2024-12-31 23:30", tz="UTC"))
    assert [(c.name, c.kind, c.missing) for c in s.columns] == [
        ("when", "time", 0.0), ("site", "category", 0.0), ("temp_c", "number", 0.25), ("note", "text", 0.25), ("y", "number", 0.0)]
    assert (s.column("temp_c").label, s.column("temp_c").unit) == ("water temperature", "°C")
    assert "1 row has a time that cannot be read" in summary_html(s)


def test_summary_of_time_parts(tmp_path):
    pd.DataFrame({"year": [2023, 2023, 2024], "month": [5, 13, 2], "x": [1.0, 2.0, 3.0], "y": [0.1, 0.2, 0.3]}).to_parquet(
        tmp_path / "t.parquet")
    (tmp_path / "dataset.toml").write_text(
        'name = "t"\ntask = "regression"\n[table]\npath = "t.parquet"\ntime = { year = "year", month = "month" }\n'
        'target = "y"\nfeatures = ["x"]\n')
    s = dataset_summary(tmp_path / "dataset.toml")
    assert s.time_range == (pd.Timestamp("2023-05-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC"))
    assert s.unreadable_times == 1 and s.column("month").role == "time part"


def test_summary_is_kept_until_the_file_changes(tmp_path):
    pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0)}).to_parquet(tmp_path / "t.parquet")
    config = tmp_path / "dataset.toml"
    config.write_text('name = "t"\ntask = "regression"\n[table]\npath = "t.parquet"\ntarget = "y"\nfeatures = ["x"]\n')
    time.sleep(2.1)   # core.file_signature trusts a file only once it has not changed for two seconds
    first = dataset_summary(config)
    assert dataset_summary(config) is first
    pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0)}).to_parquet(tmp_path / "t.parquet")
    assert dataset_summary(config).rows == 20


# ---------------------------------------------------------------- the dataset panel


def test_panel_lists_configs_and_shows_the_summary(sample_copy):
    panel = DatasetPanel(sample_copy)
    assert panel.wait()
    assert [label for label, _ in panel.choice.options] == ["data/sample/dataset.toml"]
    assert panel.config == (sample_copy / "data" / "sample" / "dataset.toml").resolve()
    assert panel.error is None and panel.summary.rows == 40_062
    assert f"{count(40_062)} rows" in panel.details.value
    assert bytes(panel.map.value).startswith(b"\x89PNG") and panel.map.layout.display is None
    assert panel.start.selected_index is None   # a config exists: starting one stays folded


def test_new_config_from_a_csv_through_the_survey(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "data" / "sample")
    (tmp_path / "data" / "quakes").mkdir()
    quakes_csv(tmp_path / "data" / "quakes" / "quakes.csv")
    panel = DatasetPanel(tmp_path)
    changes = []
    panel.on_change(lambda p: changes.append(p.config))
    panel.source.value = "data/quakes/quakes.csv"
    assert panel.target.options == ("lat", "long", "depth", "stations", "mag")   # offered from the file's header
    panel.target.value = "mag"
    panel.write_button.click()
    written = (tmp_path / "data" / "quakes" / "dataset.toml").resolve()
    assert panel.new_error is None and written.is_file()
    assert "seatrial new" in written.read_text()            # the survey's config, with its comments
    assert panel.config == written and changes == [written]
    assert [label for label, _ in panel.choice.options] == ["data/quakes/dataset.toml", "data/sample/dataset.toml"]
    assert panel.summary.rows == 300 and panel.summary.lon == "long" and panel.summary.time_range is None
    assert "data/quakes/dataset.toml" in panel.new_message.value
    # a second config from the same file goes into a folder named after it, the first one is kept
    again = panel.write_config("data/quakes/quakes.csv", "depth")
    assert again == (tmp_path / "data" / "quakes" / "quakes" / "dataset.toml").resolve()


@pytest.mark.parametrize("source, target, says", [
    ("data/nope.csv", "mag", "data/nope.csv: file not found"),
    ("data", "mag", "cannot tell the format from the suffix"),
    ("data/quakes.csv", "magnitude", "no column 'magnitude' in the file (columns: lat, long, depth, stations, mag)"),
    ("data/quakes.csv", "", "name the target column"),
    ("", "mag", "name the data file"),
])
def test_bad_path_or_target_shown_as_a_message(tmp_path, source, target, says):
    (tmp_path / "data").mkdir()
    quakes_csv(tmp_path / "data" / "quakes.csv")
    panel = DatasetPanel(tmp_path)
    assert panel.config is None and "No dataset config in this project yet" in panel.message.value
    assert panel.start.selected_index == 0
    assert panel.write_config(source, target) is None
    assert says in panel.new_error and "Traceback" not in panel.new_message.value
    assert panel.new_message.value.count("<span") == 1 and not panel.write_button.disabled
    assert not (tmp_path / "data" / "dataset.toml").exists()


def test_an_existing_config_is_never_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    quakes_csv(tmp_path / "data" / "quakes.csv")
    panel = DatasetPanel(tmp_path)
    changes = []
    panel.on_change(lambda p: changes.append(p.config))
    first = panel.write_config("data/quakes.csv", "mag")
    assert first == (tmp_path / "data" / "dataset.toml").resolve() and panel.config == first and changes == [first]
    assert repr(panel) == f"DatasetPanel({str(tmp_path.resolve())!r}: data/dataset.toml)"
    first.write_text(first.read_text() + "# my edit\n")
    assert panel.write_config("data/quakes.csv", "mag", folder="data") is None
    assert panel.new_error == "data/dataset.toml already exists; write the new config in another folder (the existing one " \
                              "may hold edits)"
    assert first.read_text().endswith("# my edit\n")


def test_a_broken_config_is_shown_as_a_message(tmp_path):
    (tmp_path / "a").mkdir()
    quakes_csv(tmp_path / "a" / "quakes.csv")
    (tmp_path / "a" / "dataset.toml").write_text('name = "q"\ntask = "regression"\n[table]\npath = "quakes.csv"\n'
                                                 'target = "magnitude"\nfeatures = ["depth"]\n')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dataset.toml").write_text('name = "q"\ntask = "regresion"\n')
    panel = DatasetPanel(tmp_path)
    assert panel.wait() and panel.summary is None and "missing required column(s) ['magnitude']" in panel.error
    assert "magnitude" in panel.message.value and panel.details.value == "" and panel.map.layout.display == "none"
    panel.select("b/dataset.toml")
    assert "key 'task' is 'regresion'" in panel.error
