"""The decision ledger on its own: hash chain, every kind of tampering named, concurrent writers in threads and processes."""
from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import threading
from datetime import datetime

import pytest

from seatrial.ledger import GENESIS, Ledger, LedgerBrokenError, LedgerError


def canonical_hash(entry: dict) -> str:
    "Computed here from the definition, not with the module's own function."
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    "A ledger of four decisions."
    led = Ledger(tmp_path / "ledger" / "decisions.jsonl")
    for i, (action, version) in enumerate([("approve", "1"), ("reject", "2"), ("approve", "3"), ("approve", "4")]):
        led.append({"actor": "ana", "action": action, "model": "fleet", "version": version, "comment": f"note {i} — ok"})
    return led


def rewrite(led: Ledger, lines: list[str]) -> None:
    led.path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_entries_form_a_chain(ledger):
    entries = [json.loads(line) for line in ledger.path.read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]
    for e in entries:
        assert e["hash"] == canonical_hash(e)
        assert datetime.fromisoformat(e["time"]).utcoffset().total_seconds() == 0
    assert entries[0]["comment"] == "note 0 — ok"     # text kept as written, not escaped
    assert ledger.entries() == entries and ledger.verify() == []
    assert json.loads(ledger.head_path.read_text()) == {"seq": 4, "hash": entries[-1]["hash"]}


def test_edited_line_is_named(ledger):
    lines = ledger.lines()
    rewrite(ledger, [lines[0], lines[1].replace('"reject"', '"approve"'), *lines[2:]])
    problems = ledger.verify()
    assert len(problems) == 1
    assert problems[0].startswith("line 2 (seq 2): its content does not match its hash")


def test_edited_and_rehashed_line_is_named_by_the_next_link(ledger):
    lines = ledger.lines()
    forged = json.loads(lines[1]) | {"action": "approve"}
    forged["hash"] = canonical_hash(forged)
    rewrite(ledger, [lines[0], json.dumps(forged), *lines[2:]])
    problems = ledger.verify()
    assert len(problems) == 1
    assert problems[0].startswith("line 3 (seq 3): its prev_hash does not match the entry before it (line 2)")


def test_deleted_line_is_named(ledger):
    lines = ledger.lines()
    rewrite(ledger, [lines[0], *lines[2:]])
    problems = ledger.verify()
    assert problems[0].startswith("line 2 (seq 3): seq 2 missing before it: entries were deleted")
    assert "prev_hash does not match" in problems[0]


def test_deleted_first_and_last_lines_are_named(ledger):
    lines = ledger.lines()
    rewrite(ledger, lines[1:])
    assert ledger.verify()[0].startswith("line 1 (seq 2): seq 1 missing before it")
    rewrite(ledger, lines[:-1])
    assert ledger.verify() == ["end of ledger: the last entry is seq 3, but seq 4 was written: the last entries were deleted"]


def test_reordered_lines_are_named(ledger):
    lines = ledger.lines()
    rewrite(ledger, [lines[0], lines[2], lines[1], lines[3]])
    problems = ledger.verify()
    assert problems[0].startswith("line 2 (seq 3): it follows seq 1, but seq 2 is at line 3: entries were reordered")
    assert problems[1].startswith("line 3 (seq 2): seq 2 where seq 4 should come: entries were reordered or repeated")
    assert problems[2].startswith("line 4 (seq 4): it follows seq 2, but seq 3 is at line 2: entries were reordered")


def test_bad_json_and_blank_lines_are_named(ledger):
    lines = ledger.lines()
    rewrite(ledger, [lines[0], lines[1][:40], *lines[2:]])
    assert ledger.verify()[0].startswith("line 2: not valid JSON")
    rewrite(ledger, [lines[0], "", *lines[1:]])
    assert ledger.verify()[0].startswith("line 2: empty line")
    rewrite(ledger, [lines[0], '{"seq": 2}', *lines[2:]])
    assert ledger.verify()[0] == "line 2 (seq 2): not a ledger entry (no time, prev_hash, hash)"


def test_broken_ledger_refuses_to_append(ledger):
    lines = ledger.lines()
    rewrite(ledger, [lines[0], lines[1].replace("note 1", "note 9"), *lines[2:]])
    before = ledger.path.read_bytes()
    with pytest.raises(LedgerBrokenError) as err:
        ledger.append({"actor": "ben", "action": "approve", "version": "5"})
    assert "line 2 (seq 2)" in str(err.value) and "nothing more is written" in str(err.value)
    assert err.value.problems == ledger.verify()
    assert ledger.path.read_bytes() == before


def test_ledger_fields_are_its_own(tmp_path):
    led = Ledger(tmp_path / "d.jsonl")
    with pytest.raises(LedgerError, match="may not set"):
        led.append({"seq": 10, "action": "approve"})
    assert not led.path.exists()


def test_failing_before_write_writes_nothing(ledger):
    before = ledger.path.read_bytes()
    seen = []

    def refuse(entry):
        seen.append(entry)
        raise RuntimeError("registry unavailable")
    with pytest.raises(RuntimeError):
        ledger.append({"action": "approve", "version": "5"}, before_write=refuse)
    assert seen[0]["seq"] == 5 and seen[0]["hash"] == canonical_hash(seen[0])
    assert ledger.path.read_bytes() == before and ledger.verify() == []


def _append_many(path: str, who: str, n: int, barrier) -> None:
    led = Ledger(path)
    barrier.wait()
    for i in range(n):
        led.append({"actor": who, "i": i})


def test_concurrent_writers_in_threads_and_processes_keep_one_chain(tmp_path):
    path = str(tmp_path / "decisions.jsonl")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_many, args=(path, who, 25, barrier)) for who in ("proc-a", "proc-b")]
    for p in procs: p.start()
    shared = Ledger(path)   # two threads share one Ledger object, as the app's sessions do

    def in_thread(who):
        barrier.wait()
        for i in range(25): shared.append({"actor": who, "i": i})
    threads = [threading.Thread(target=in_thread, args=(who,)) for who in ("thread-a", "thread-b")]
    for t in threads: t.start()
    for t in threads: t.join()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    led = Ledger(path)
    entries = led.entries()
    assert [e["seq"] for e in entries] == list(range(1, 101))
    assert led.verify() == []
    for who in ("proc-a", "proc-b", "thread-a", "thread-b"):   # each writer's entries all there, in its own order
        assert [e["i"] for e in entries if e["actor"] == who] == list(range(25))


def test_a_held_lock_times_out_with_a_clear_message(tmp_path):
    path = tmp_path / "decisions.jsonl"
    holder, waiter = Ledger(path), Ledger(path, lock_timeout=0.2)
    held, release = threading.Event(), threading.Event()

    def hold():
        with holder.locked():
            held.set()
            release.wait(30)
    t = threading.Thread(target=hold)
    t.start()
    held.wait(30)
    try:
        with pytest.raises(LedgerError, match="stayed locked by another writer"):
            waiter.append({"action": "approve"})
    finally:
        release.set()
        t.join()
    assert waiter.append({"action": "approve"})["seq"] == 1


def test_lock_is_reentrant_within_a_thread(tmp_path):
    led = Ledger(tmp_path / "decisions.jsonl")
    with led.locked():
        first = led.append({"action": "approve", "version": "1"})
        second = led.append({"action": "reject", "version": "2"})
    assert (first["seq"], second["prev_hash"]) == (1, first["hash"])
