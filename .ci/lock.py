#!/usr/bin/env python3
"""requirements.lock: every package that settings.ini's requirements and dev_requirements pull in, at one exact
version with its hashes, for CPython 3.11 on Linux x86_64. `make install` installs it with pip --require-hashes.

    python3 .ci/lock.py check                 does requirements.lock still match settings.ini? (make test, make install)
    python3 .ci/lock.py compile [--upgrade]   re-make requirements.lock (make lock; needs uv)
    python3 .ci/lock.py compare PYTHON        list pins that differ from what PYTHON's environment has installed

The lock's header records the requirement lines it was compiled from and their sha256, so `check` can tell when
settings.ini changed without `make lock`, and say which lines. Standard library only: `check` runs before any venv.
"""
import argparse
import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The oldest 3.11 the pinned versions accept (soupsieve needs 3.11.5; Debian 12's own python3 is 3.11.2).
PYTHON_VERSION = "3.11.5"
PLATFORM = "x86_64-unknown-linux-gnu"
# Not in settings.ini but locked too: pip itself, so the installer that .venv ends up with is the tested one.
TOOLS = ["pip"]
HEADER = f"""\
# requirements.lock: the exact version and hashes of every package seatrial installs, for CPython 3.11 ({PYTHON_VERSION}+) on Linux.
# Compiled from settings.ini's requirements and dev_requirements (+ {' '.join(TOOLS)}) by `make lock` (.ci/lock.py).
# Do not edit by hand: change settings.ini, then run `make lock` (UPGRADE=1 for the newest allowed versions).
"""


class LockError(Exception):
    """requirements.lock does not match settings.ini, or is malformed."""


def inputs(settings: Path) -> list[str]:
    "The requirement lines the lock is compiled from: settings.ini's requirements, dev_requirements, then TOOLS."
    cfg = configparser.ConfigParser(delimiters=["="], interpolation=None)
    if not cfg.read(settings, encoding="utf-8"):
        raise LockError(f"{settings}: not found")
    d = cfg["DEFAULT"]
    return [*d.get("requirements", "").split(), *d.get("dev_requirements", "").split(), *TOOLS]


def digest(lines: list[str]) -> str:
    "sha256 of the inputs and the target; the order of requirements does not matter to pip, so neither to this."
    text = json.dumps({"python": PYTHON_VERSION, "platform": PLATFORM, "requirements": sorted(lines)})
    return hashlib.sha256(text.encode()).hexdigest()


def header(lines: list[str]) -> str:
    return HEADER + f"# inputs-sha256: {digest(lines)}\n# inputs: {' '.join(lines)}\n"


def norm(name: str) -> str:
    "A project name as pip compares it (PEP 503)."
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[dict, dict[str, str]]:
    "(header fields, {name: version}) of a lock; every entry must be `name==version` with at least one hash."
    fields = dict(re.findall(r"^# (inputs-sha256|inputs): ?(.*)$", text, re.M))
    pins = {}
    # an entry is one logical line: `name==version \` then `--hash=...` continuation lines
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", entry)
        if not m:
            raise LockError(f"requirements.lock: `{entry[:80]}` is not `name==version --hash=sha256:...`;"
                            " run `make lock` instead of editing the file")
        pins[norm(m[1])] = m[2]
    return fields, pins


def check(settings: Path, lock: Path) -> str:
    "Raise LockError unless `lock` was compiled from `settings`' current requirements; return a one-line summary."
    if not lock.exists():
        raise LockError(f"{lock.name}: not found; run `make lock` to make it from settings.ini")
    want = inputs(settings)
    fields, pins = parse_lock(lock.read_text(encoding="utf-8"))
    if "inputs-sha256" not in fields:
        raise LockError(f"{lock.name} has no `# inputs-sha256:` header line; run `make lock` to re-make it")
    if fields["inputs-sha256"] != digest(want):
        old = fields.get("inputs", "").split()
        gone, new = sorted(set(old) - set(want)), sorted(set(want) - set(old))
        what = "; ".join(f"{label}: {' '.join(items)}" for label, items in
                         (("added or changed", new), ("removed or changed", gone)) if items)
        raise LockError(f"{lock.name} is out of date: settings.ini's requirements changed since it was made"
                        f" ({what or 'the target Python or platform changed'}). Run `make lock` and commit"
                        f" {lock.name} with settings.ini.")
    missing = [r for r in want if norm(re.match(r"[A-Za-z0-9._-]+", r)[0]) not in pins]
    if missing:
        raise LockError(f"{lock.name} pins no version of {', '.join(missing)}; run `make lock` to re-make it")
    return f"{lock.name} matches settings.ini ({len(pins)} packages pinned with hashes)"


def check_python() -> None:
    "Raise LockError unless this interpreter can install the lock (pip would stop half-way with a terse message)."
    need = tuple(int(x) for x in PYTHON_VERSION.split("."))
    have = sys.version_info[:3]
    if have[:2] != need[:2] or have < need:
        raise LockError(f"requirements.lock is for CPython {need[0]}.{need[1]} from {PYTHON_VERSION} on, but"
                        f" {sys.executable} is {'.'.join(map(str, have))}: make a venv with such a Python"
                        f" (e.g. `make install VENV_PYTHON=/path/to/python3.11`)")


def compile_lock(settings: Path, lock: Path, upgrade: bool, constraints: Path | None, uv: str) -> None:
    "Resolve settings.ini's requirements with uv into `lock`, keeping the pins it has unless `upgrade`."
    want = inputs(settings)
    with tempfile.TemporaryDirectory() as tmp:
        # uv annotates each pin with the file it came from: stable names keep the lock's diff to real changes
        (Path(tmp) / "settings.ini").write_text("\n".join(want) + "\n", encoding="utf-8")
        out = Path(tmp) / "requirements.lock"
        if lock.exists() and not upgrade:
            shutil.copy(lock, out)  # uv prefers the versions already in its output file
        cmd = [uv, "pip", "compile", "settings.ini", "-o", out.name, "--generate-hashes", "--no-header",
               "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
               "--index-url", "https://pypi.org/simple", "--quiet"]
        if constraints:
            # Two passes: the first takes the constraints' versions, the second re-resolves with those as
            # preferences only, so the lock's `# via` notes name settings.ini and not a throwaway freeze.
            shutil.copy(constraints, Path(tmp) / "constraints.txt")
            run(cmd + ["--constraints", "constraints.txt"] + (["--upgrade"] if upgrade else []), tmp)
            forced = parse_lock(out.read_text(encoding="utf-8"))[1]
            run(cmd, tmp)
            final = parse_lock(out.read_text(encoding="utf-8"))[1]
            if final != forced:
                moved = sorted(set(final.items()) ^ set(forced.items()))
                raise LockError(f"the second pass moved pins the constraints had chosen: {moved}")
        else:
            run(cmd + (["--upgrade"] if upgrade else []), tmp)
        body = out.read_text(encoding="utf-8")
    lock.write_text(header(want) + body, encoding="utf-8")
    print(check(settings, lock))


def run(cmd: list[str], cwd: str) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True)
    except FileNotFoundError:
        raise LockError(f"`{cmd[0]}` not found: `make lock` installs uv itself, or pass --uv PATH") from None
    except subprocess.CalledProcessError:
        raise LockError("uv could not resolve settings.ini's requirements (its message is above)") from None


def installed(python: str) -> dict[str, str]:
    "{name: version} of every distribution in PYTHON's environment."
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    return {norm(k): v for k, v in json.loads(out).items()}


def compare(lock: Path, python: str) -> list[str]:
    "Pins of `lock` that PYTHON's environment lacks or has at another version."
    have = installed(python)
    return [f"{name}: lock {v}, installed {have.get(name, 'none')}"
            for name, v in sorted(parse_lock(lock.read_text(encoding="utf-8"))[1].items()) if have.get(name) != v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", type=Path, default=ROOT / "settings.ini")
    p.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("check", help="fail unless the lock was compiled from settings.ini's current requirements"
                       " and this Python can install it")
    k.add_argument("--any-python", action="store_true", help="check the lock against settings.ini only")
    c = sub.add_parser("compile", help="re-make the lock with uv")
    c.add_argument("--upgrade", action="store_true", help="newest allowed versions, not the ones in the lock")
    c.add_argument("--constraints", type=Path, help="a pip freeze whose versions the lock must take")
    c.add_argument("--uv", default=os.environ.get("UV", "uv"), help="the uv executable (default: $UV or uv)")
    v = sub.add_parser("compare", help="list pins that differ from an environment's installed versions")
    v.add_argument("python", help="that environment's python, e.g. .venv/bin/python")
    a = p.parse_args(argv)
    try:
        if a.cmd == "check":
            if not a.any_python:
                check_python()
            print(check(a.settings, a.lock))
        elif a.cmd == "compile":
            compile_lock(a.settings, a.lock, a.upgrade, a.constraints, a.uv)
        else:
            diff = compare(a.lock, a.python)
            print("\n".join(diff) or f"every pin of {a.lock.name} is what {a.python} has installed")
            return 1 if diff else 0
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
