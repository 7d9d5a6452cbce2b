"""The approval gate of serving (`seatrial.sail`) on a real two-version fleet project, decided with the real `seatrial review`."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from conftest import approve_with_cli as _approve, cli as _cli, mlflow_client

from seatrial import review
from seatrial.core import hash_path
from seatrial.review import ledger_path
from seatrial.sail import (LedgerBrokenError, NotApprovedError, SailError, SailingModel, TamperedModelError, approved_model,
                           champion_stamp)
from seatrial.train import load_booster, predict_lightgbm


def test_only_the_approved_champion_sails_and_the_stamp_follows_it(fleet_project):
    root = fleet_project
    with pytest.raises(NotApprovedError, match="fleet has no champion: no version of it was approved"):
        approved_model(root, "fleet")
    with pytest.raises(NotApprovedError, match="no registered model 'ships'"):
        approved_model(root, "ships")
    none = champion_stamp(root, "fleet")
    assert none.startswith("champion=- ") and champion_stamp(root, "fleet") == none

    digest = _approve(root, "1", "none")
    one = champion_stamp(root, "fleet")
    assert one.startswith("champion=1 ") and one != none

    m = approved_model(root, "fleet")
    assert isinstance(m, SailingModel)
    assert (m.name, m.version, m.reviewed, m.approved_by, m.evidence_digest) == ("fleet", "1", True, "ana", digest)
    tags = mlflow_client(root).get_model_version("fleet", "1").tags
    assert m.sha256 == tags["seatrial.model_sha256"] == hash_path(m.model_path)
    assert m.model_path.is_relative_to(root.resolve()) and m.model_path.name == "model.txt"
    assert m.approved_at == review.history(root, "fleet")[0]["time"] and m.ledger_seq == 1
    assert (m.task, m.run, m.config.name) == ("regression", tags["seatrial.run"], "dataset.toml")
    assert m.mlflow_run_id == tags["seatrial.pipeline_run_id"]
    reference = load_booster(m.model_path)
    assert list(m.features) == reference.feature_name()
    assert m.feature_types["vessel_type"] == "string" and m.feature_types["stw_kn"] == "double"
    assert list(m.feature_types) == list(m.features)
    assert m.categories == {"vessel_type": ("bulk_carrier", "container", "tanker")}
    rows = pd.read_parquet(m.model_path.with_name("example.parquet"))
    booster = m.load_booster()
    served = predict_lightgbm(booster, rows)
    assert np.isfinite(served).all() and np.array_equal(served, predict_lightgbm(reference, rows))
    assert m == approved_model(root, "fleet", 1)   # the champion, asked for by number

    with pytest.raises(NotApprovedError, match=r"fleet version 2 may not sail: the decision ledger records no approval of it "
                                               r"\(its status in the registry: pending_review\)"):
        approved_model(root, "fleet", 2)
    with pytest.raises(review.UnknownVersionError, match="model 'fleet' has no version '9'"):
        approved_model(root, "fleet", 9)
    free = approved_model(root, "fleet", 2, unreviewed=True)
    assert (free.version, free.reviewed, free.approved_by, free.evidence_digest) == ("2", False, None, None)
    assert free.sha256 == hash_path(free.model_path) != m.sha256 and free.features == m.features
    with pytest.raises(SailError, match="needs an explicit version"):
        approved_model(root, "fleet", unreviewed=True)
    assert champion_stamp(root, "fleet") == one   # reading, refusing and serving unreviewed change nothing

    _approve(root, "2", "1")
    two = champion_stamp(root, "fleet")
    assert two.startswith("champion=2 ") and two not in (none, one)
    assert approved_model(root, "fleet").version == "2"
    assert approved_model(root, "fleet", 1).version == "1"   # outranked, still approved: a rollback returns to it
    client = mlflow_client(root)
    client.set_registered_model_alias("fleet", "champion", "1")   # moved by hand in MLflow: no decision
    assert champion_stamp(root, "fleet").startswith("champion=1 ")
    with pytest.raises(NotApprovedError, match="fleet version 1 may not sail as champion: the registry's champion alias points "
                                               "at it, but the ledger's champion is version 2"):
        approved_model(root, "fleet")
    client.set_registered_model_alias("fleet", "champion", "2")
    assert champion_stamp(root, "fleet") == two

    _cli(root, "review", "rollback", "fleet", "-m", "drifts on the tankers", "--user", "ana")
    back = champion_stamp(root, "fleet")
    assert back.startswith("champion=1 ") and back not in (one, two)   # same champion as before, but the ledger moved on
    assert approved_model(root, "fleet").version == "1"
    with pytest.raises(NotApprovedError, match=r"fleet version 2 may not sail: it was approved, then rolled back by ana at .* "
                                               r"\(ledger seq 3\); the champion went back to version 1"):
        approved_model(root, "fleet", 2)
    assert champion_stamp(root, "fleet") == back


def test_a_changed_model_file_or_ledger_is_refused(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    m = approved_model(root, "fleet")
    assert m.model_path.is_relative_to(root.resolve())   # the copy's own file: fleet_base stays intact
    original = m.model_path.read_bytes()
    m.model_path.write_bytes(original.replace(b"leaf_value=", b"leaf_value=0", 1))   # same model, other bytes: still refused
    found = hash_path(m.model_path)
    with pytest.raises(TamperedModelError) as err:
        approved_model(root, "fleet")
    assert (f"fleet version 1 may not sail: its model file {m.model_path} is not the one approved" in str(err.value)
            and f"pinned sha256 {m.sha256[:12]}…, the file on disk has {found[:12]}…" in str(err.value)
            and "by ana at" in str(err.value))
    with pytest.raises(TamperedModelError, match="changed after it was checked"):
        m.load_booster()   # a model checked before the change is not loaded after it either
    m.model_path.unlink()
    with pytest.raises(TamperedModelError, match="does not exist: it was moved or deleted"):
        approved_model(root, "fleet")
    m.model_path.write_bytes(original)
    assert approved_model(root, "fleet") == m

    led = ledger_path(root)
    text = led.read_text()
    led.write_text(text.replace("speed-band errors below baseline", "speed-band errors far below baseline", 1))
    with pytest.raises(LedgerBrokenError) as err:
        approved_model(root, "fleet")
    assert isinstance(err.value, review.LedgerBrokenError) and isinstance(err.value, SailError)
    assert str(err.value).startswith(f"fleet version 1 may not sail: the ledger {led} has been tampered with")
    assert "line 1 (seq 1): its content does not match its hash" in str(err.value)
    with pytest.raises(LedgerBrokenError, match="fleet version 2 may not sail"):
        approved_model(root, "fleet", 2)   # no approval is read from a broken ledger, whichever version is asked for

    led.write_text(text)
    lines = text.splitlines(keepends=True)
    led.write_text("".join(lines[:-1]) if len(lines) > 1 else "")   # the approval cut away, head file and all
    led.with_name(led.name + ".head").unlink()
    with pytest.raises(LedgerBrokenError, match=r"registry's anchor on model fleet .* says entry 1 .* entries were cut"):
        approved_model(root, "fleet")
