"""`seatrial.export`: an approved fleet version written as ONNX, reloaded in onnxruntime and compared with LightGBM on its
test rows; unapproved versions, unknown versions and unknown formats refused, nothing written."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import approve_with_cli

from seatrial.export import (UnsupportedFormatError, check_against_lightgbm, export_model, onnx_predict, onnx_session,
                             version_test_rows)
from seatrial.review import UnknownVersionError
from seatrial.sail import NotApprovedError, approved_model


def test_approved_version_exports_and_answers_as_lightgbm(fleet_project, tmp_path):
    root = fleet_project
    digest = approve_with_cli(root, "1", "none")
    with pytest.raises(NotApprovedError, match=r"fleet version 2 may not sail: the decision ledger records no approval of it"):
        export_model(root, "fleet", 2)
    with pytest.raises(UnknownVersionError, match="model 'fleet' has no version '9'"):
        export_model(root, "fleet", 9)
    with pytest.raises(UnsupportedFormatError, match="cannot export as 'pmml'"):
        export_model(root, "fleet", 1, fmt="pmml")
    assert not (root / "exports").exists()   # refused: nothing written

    report = export_model(root, "fleet", 1)
    print("\n".join(report.lines()))
    assert report.path == root.resolve() / "exports" / "fleet-v1.onnx" and report.path.stat().st_size == report.size
    assert [p.name for p in report.path.parent.iterdir()] == ["fleet-v1.onnx"]   # no temporary file left
    assert (report.reviewed, report.approved_by, report.evidence_digest) == (True, "ana", digest)
    c = report.check
    assert c.passed and c.rows > 1000 and 0 < c.largest_difference <= c.tolerance and c.stored_difference <= 1e-9
    assert report.categories == {"vessel_type": ("bulk_carrier", "container", "tanker")}

    model = onnx.load(report.path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["seatrial.model"], meta["seatrial.version"], meta["seatrial.reviewed"]) == ("fleet", "1", "true")
    assert (meta["seatrial.approved_by"], meta["seatrial.evidence_digest"]) == ("ana", digest)
    m = approved_model(root, "fleet", 1)
    assert meta["seatrial.model_sha256"] == m.sha256 and json.loads(meta["seatrial.features"]) == list(m.features)
    assert json.loads(meta["seatrial.check"])["largest_difference"] == c.largest_difference

    # reloaded from the file: the same answers as LightGBM on the version's test rows, within the stated tolerance
    X, ids, stored, _ = version_test_rows(root, m)
    booster = m.load_booster()
    served = onnx_predict(onnx_session(report.path), X)
    same_rows = booster.predict(X.astype(np.float32).astype(np.float64), num_threads=1)
    largest = float(np.max(np.abs(served - same_rows)))
    print(f"reloaded: largest |onnx - lightgbm| over {len(X):,} test rows = {largest:.3g} (tolerance {c.tolerance:.3g}); "
          f"against the stored predictions {np.max(np.abs(served - stored)):.3g}")
    assert largest == c.largest_difference <= c.tolerance
    assert np.max(np.abs(served - stored)) <= c.tolerance
    assert len(np.unique(X[:, list(m.features).index("vessel_type")])) == 3   # every category code went through the check

    # --unreviewed: written where asked, and the file and the report say so
    free = export_model(root, "fleet", 2, out=tmp_path / "v2.onnx", unreviewed=True)
    assert free.path == tmp_path / "v2.onnx" and not free.reviewed and free.check.passed
    meta2 = {p.key: p.value for p in onnx.load(free.path).metadata_props}
    assert meta2["seatrial.reviewed"].startswith("false") and meta2["seatrial.approved_by"] == ""
    assert "UNREVIEWED" in "\n".join(free.lines())

    # another model's answers are far outside the tolerance: the check tells a wrong model from rounding
    wrong = check_against_lightgbm(onnx_session(free.path), booster, X, ids)
    assert not wrong.passed and wrong.largest_difference > 10 * wrong.tolerance

