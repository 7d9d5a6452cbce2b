"""Issue 9, bad input: parameter values that are not finite or out of range, exact copies of rows in any table, and
CSV files whose fault is named for what it is (no line break, a line too long, an unclosed quote where it opens)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PIPELINE, run_seatrial

from seatrial.dataset import DataFileError, TableSpec, load_config, read_frame, read_table
from seatrial.ingest import ingest_dataset
from seatrial.runner import discover_stages, stage_parameters
from seatrial.stage import ParameterError, declared_parameters, parse_assignment

# --- parameter values -----------------------------------------------------------------------------


def _check(*assignments: str) -> dict:
    "Route command-line `-p` assignments through the runner's own check, as `seatrial run` does."
    given: dict[str, dict] = {}
    for a in assignments:
        name, value = parse_assignment(a)
        stage, _, name = name.rpartition(".")
        given.setdefault(stage or "*", {})[name] = value
    return stage_parameters(discover_stages(PIPELINE), given)


@pytest.mark.parametrize("assignment, message", [
    ("valid_fraction=1e309", "stage 'train': valid_fraction must be a finite number; got inf"),
    ("train.valid_fraction=-1e309", "stage 'train': valid_fraction must be a finite number; got -inf"),
    ("max_loss_vs_champion=nan", None),   # 'nan' is no Python literal: it stays text, a type error
    ('train.grid=[{"num_leaves": 15, "learning_rate": 1e309}]',
     "stage 'train': grid[0]['learning_rate'] must be a finite number; got inf"),
    ('train.grid=[{"num_leaves": 15, "lambda_l1": [0.0, -1e309]}]',
     "stage 'train': grid[0]['lambda_l1'][1] must be a finite number; got -inf"),
])
def test_non_finite_numbers_are_refused_at_the_check(assignment, message):
    with pytest.raises(ParameterError) as e:
        _check(assignment)
    assert message is None or message in str(e.value)


def test_nan_itself_is_refused_with_the_stage_and_parameter():
    from seatrial.stage import check_parameters
    declared = declared_parameters(PIPELINE / "04_evaluate.ipynb")
    with pytest.raises(ParameterError, match=r"stage 'evaluate': max_loss_vs_champion must be a finite number; got nan"):
        check_parameters("evaluate", declared, {"max_loss_vs_champion": float("nan")})


@pytest.mark.parametrize("assignment, message", [
    ("valid_fraction=1.5", "stage 'train': valid_fraction must be greater than 0 and less than 1; got 1.5"),
    ("train.valid_fraction=0", "stage 'train': valid_fraction must be greater than 0 and less than 1; got 0"),
    ("folds=-2", "stage 'train': folds must be at least 0; got -2"),
    ("evaluate.max_loss_vs_champion=-0.5", "stage 'evaluate': max_loss_vs_champion must be -1 or at least 0; got -0.5"),
    ("dependence_features=-1", "stage 'explain': dependence_features must be at least 0; got -1"),
])
def test_values_outside_the_declared_range_are_refused(assignment, message):
    with pytest.raises(ParameterError) as e:
        _check(assignment)
    assert message in str(e.value)


def test_values_inside_the_range_pass():
    out = _check("valid_fraction=0.3", "folds=0", "max_loss_vs_champion=-1", "evaluate.max_loss_vs_champion=0.1",
                 "dependence_features=0")
    assert out["train"] == {"valid_fraction": 0.3, "folds": 0}


def test_every_numeric_parameter_of_the_pipeline_declares_its_range():
    "A seed may be any integer; every other number a stage takes has a range, shown in its help comment."
    for stage in discover_stages(PIPELINE):
        for p in declared_parameters(stage.notebook).values():
            if p.type in ("int", "float") and p.name != "seed":
                assert p.allowed and p.help.endswith(f"({p.allowed})"), (stage.name, p.name)


def test_a_stage_with_a_bad_range_is_refused_when_read(tmp_path):
    def nb(src: str) -> Path:
        p = tmp_path / "01_x.ipynb"
        p.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": src,
                                            "outputs": [], "execution_count": None}], "metadata": {},
                                 "nbformat": 4, "nbformat_minor": 5}))
        return p
    with pytest.raises(ParameterError, match="default 0 is outside its own range"):
        declared_parameters(nb("k: int = 0  # clusters (x >= 1)"))
    with pytest.raises(ParameterError, match="only int and float parameters take an allowed range"):
        declared_parameters(nb('name: str = "a"  # a label (x > 0)'))
    with pytest.raises(ParameterError, match="cannot read its allowed range"):
        declared_parameters(nb("k: int = 1  # clusters (x >= y + 1)"))


def test_the_cli_refuses_them_before_anything_runs(quakes_project):
    root, config = quakes_project
    for param, message in [("valid_fraction=1e309", "valid_fraction must be a finite number; got inf"),
                           ("valid_fraction=1.5", "valid_fraction must be greater than 0 and less than 1; got 1.5")]:
        proc = run_seatrial(root, "run", "--config", str(config), "-p", param, "-q")
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (root / "runs").exists()
    listing = run_seatrial(root, "stages")
    assert "(0 < x < 1)" in listing.stdout and "(x == -1 or x >= 0)" in listing.stdout


# --- exact copies of rows -------------------------------------------------------------------------

NO_TIME = """
name = "quakes"
task = "regression"
[table]
path = "quakes.csv"
target = "mag"
features = ["depth", "stations"]
[ingest]
max_rejected_fraction = 0.1
"""


def test_copied_rows_are_quarantined_in_a_table_without_time(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"depth": rng.integers(40, 680, 1000), "stations": rng.integers(10, 130, 1000),
                       "mag": rng.normal(4.6, 0.4, 1000).round(1)}).drop_duplicates(ignore_index=True)
    df.loc[5, "stations"] = np.nan   # a copy with an empty cell is still a copy
    copied = np.arange(0, 60, 2)
    pd.concat([df, df.iloc[copied]], ignore_index=True).to_csv(tmp_path / "quakes.csv", index=False)
    (tmp_path / "dataset.toml").write_text(NO_TIME)
    res = ingest_dataset(load_config(tmp_path / "dataset.toml"))
    n = len(df)
    assert res.report["exact_copies"] == 30 and res.report["quarantined_rows"] == 30
    assert res.report["rejects_by_column_rule"] == {"all columns": {"duplicate": 30}}
    reasons = dict(zip(res.quarantine.row_id, res.quarantine.reason))
    assert reasons == {n + i: f"all columns: duplicate (exact copy of row_id {r})" for i, r in enumerate(copied)}
    assert res.clean.row_id.tolist() == list(range(n))   # the first copy stays


def test_copies_and_key_conflicts_are_told_apart(tmp_path):
    "With time and entity, an exact copy says so; a repeated key with other values is still a key duplicate."
    times = pd.date_range("2025-01-01", periods=6, freq="h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    df = pd.DataFrame({"time": times, "ship": ["a"] * 6, "stw_kn": [10.0, 11, 12, 13, 14, 15],
                       "fuel": [20.0, 21, 22, 23, 24, 25]})
    df = pd.concat([df, df.iloc[[1]], df.iloc[[2]].assign(fuel=99.0)], ignore_index=True)
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "dataset.toml").write_text('name = "t"\ntask = "regression"\n[table]\npath = "t.csv"\ntime = "time"\n'
                                           'entity = "ship"\ntarget = "fuel"\nfeatures = ["stw_kn"]\n'
                                           '[ingest]\nmax_rejected_fraction = 0.5\n')
    res = ingest_dataset(load_config(tmp_path / "dataset.toml"))
    assert dict(zip(res.quarantine.row_id, res.quarantine.reason)) == {
        6: "all columns: duplicate (exact copy of row_id 1)", 7: "time: duplicate (same (ship, time) as row_id 2)"}
    assert res.report["exact_copies"] == 1


# --- what a CSV file really holds -----------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def _fails(path: Path, *parts: str) -> str:
    with pytest.raises(DataFileError) as e:
        read_frame(path, "csv")
    msg = str(e.value)
    for p in parts: assert p in msg, msg
    return msg


def test_a_file_without_any_line_break_says_so(tmp_path):
    msg = _fails(_write(tmp_path, "one.csv", b"a,b,c" + b",1" * 1_500_000), "no line break at all in 3.0 MB")
    assert "quote" not in msg and "empty" not in msg


def test_a_single_long_line_is_measured_not_blamed_on_a_quote(tmp_path):
    msg = _fails(_write(tmp_path, "long.csv", b"x" * 3_000_000 + b"\n"),
                 "line 1 is 3.0 MB long (one value of 3.0 MB without a comma)")
    assert "quote" not in msg and "empty" not in msg
    _fails(_write(tmp_path, "lost.csv", b"1,2,3," * 500_000 + b"\n"), "line 1 is 3.0 MB long (1,500,001 fields)",
           "line breaks were probably lost")


def test_a_field_over_the_readers_limit_is_named(tmp_path):
    msg = _fails(_write(tmp_path, "field.csv", b"a,b,c\n1,2,3\n4," + b"y" * 3_000_000 + b",6\n7,8,9\n"),
                 "line 3 is 3.0 MB long (field 2 ('b') alone holds 3.0 MB)")
    assert "quote" not in msg


def test_an_unclosed_quote_is_found_where_it_opens(tmp_path):
    "In a large file pyarrow dropped the rows after a stray quote without a word; now the quote is named."
    data = b"a,b,c\n1,2,3\n4,\"oops,6\n" + b"7,8,9\n" * 500_000
    _fails(_write(tmp_path, "quote.csv", data), "unclosed quote: the '\"' on line 3 (at '\"oops,6')",
           "the file has 1 '\"', an odd number")
    _fails(_write(tmp_path, "cr.csv", data.replace(b"\n", b"\r")), "the '\"' on line 3")   # lone \r line ends
    _fails(_write(tmp_path, "crlf.csv", data.replace(b"\n", b"\r\n")), "the '\"' on line 3")


def test_quoted_line_breaks_are_read_not_refused(tmp_path):
    rows = "".join(f'{i},"first line\nsecond {i}",{2 * i}\n' for i in range(100_000))
    df = read_frame(_write(tmp_path, "multi.csv", ("a,b,c\n" + rows).encode()), "csv")
    assert len(df) == 100_000 and df.b.iloc[-1] == "first line\nsecond 99999"


def test_lone_carriage_returns_are_line_ends(tmp_path):
    path = _write(tmp_path, "mac.csv", b"x,y\r" + b"1,2\r" * 300_000)
    df = read_table(TableSpec(path, "csv", None, None, None, None, "y", ["x"]))
    assert len(df) == 300_000
