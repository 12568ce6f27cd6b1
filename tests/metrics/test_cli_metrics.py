"""`symcore metrics RESULTS.csv --truth FORMULAS`: per-equation and summary figures, --json."""

import json
import os

import pytest

pytest.importorskip("zss")

from symcore.app.cli import main  # noqa: E402

TRUTH = os.path.join(os.path.dirname(__file__), "..", "fixtures", "formulas", "srsd_feynman_120.json")


@pytest.fixture()
def results(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text("eq_name,pred\n"
                 "feynman-i.12.1,2.5*x0*x1\n"               # truth x0*x1: a scale -> solution
                 "feynman-i.12.4,x0 + x1\n"
                 "feynman-i.6.20a,\n"                         # empty: missing
                 "not-an-equation,x0\n")
    return str(p)


def test_json(results, capsys):
    assert main(["metrics", results, "--truth", TRUTH, "--method", "symcore", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["equation"]: r for r in out["equations"]}
    assert len(rows) == 120
    assert rows["feynman-i.12.1"]["solution"] and rows["feynman-i.12.1"]["solution_kind"] == "ratio"
    assert rows["feynman-i.12.1"]["ned"] == pytest.approx(1 / 3)
    assert not rows["feynman-i.12.4"]["solution"] and rows["feynman-i.12.4"]["ned"] > 0
    assert rows["feynman-i.6.20a"]["ned_status"] == "missing" and rows["feynman-i.6.20a"]["ned"] == 1.0
    s = out["summary"]
    assert s["equations"] == 120 and s["with_prediction"] == 2
    assert s["symbolic_solutions"] == 1 and s["unmatched_results"] == ["not-an-equation"]


def test_text_and_errors(results, capsys, tmp_path):
    assert main(["metrics", results, "--truth", TRUTH, "--method", "symcore"]) == 0
    out = capsys.readouterr().out
    assert "feynman-i.12.1" in out and "mean NED" in out and "not-an-equation" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["metrics", str(bad), "--truth", TRUTH]) == 1
    assert "no equation-name column" in capsys.readouterr().err
    assert main(["metrics", results, "--truth", str(tmp_path / "none.json")]) == 1
    assert "truth file not found" in capsys.readouterr().err
