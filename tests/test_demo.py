"""`overparam demo --quick`: the main job end to end on embedded data, read back from its outputs."""

import json

import pytest
from readings_check import (
    assert_claims_hold,
    assert_comparisons_recorded,
    assert_page_numbers_hold,
)

from overparam.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_outputs_exist_and_parts_are_sweep_directories(demo):
    assert (demo / "report.html").is_file() and (demo / "summary.json").is_file()
    for part in ("random-features", "trained-mlp"):
        assert (demo / part / "overparam.sqlite").is_file()
        assert main(["runs", str(demo / part), "--json"]) == 0


def test_report_is_self_contained(demo):
    page = (demo / "report.html").read_text()
    assert "<script src=" not in page and "<link " not in page
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") >= 3


def test_summary_holds_the_rff_double_descent(demo):
    summary = json.loads((demo / "summary.json").read_text())
    curve = summary["parts"]["random-features"]["double_descent"]["curves"][0]
    assert 450 <= curve["peak_size"] <= 550
    assert curve["second_descent"] is True
    assert curve["peak_test_error"] >= 3 * curve["best_over_test_error"]
    assert curve["shape"] == "double descent" and curve["bump"]["evidence"] == "clear"
    assert summary["headline"][0].startswith("random-features: this task needs about")


def test_the_top_and_the_sections_are_one_computation(demo):
    """Issue 16: the top said "peaks at 0.87 … 0.0139 by 3,159 features" (median) while the section said
    "0.853 … 0.0141 by 7,942 features" (mean). Now the top repeats the section's own sentences."""
    summary = json.loads((demo / "summary.json").read_text())
    for name in ("random-features", "trained-mlp"):
        section = summary["parts"][name]["double_descent"]["sentences"]
        tops = [line.split(": ", 1)[1] for line in summary["headline"] if line.startswith(f"{name}: ")]
        assert len(tops) == 2 and tops[1][0].upper() + tops[1][1:] in section
    assert summary["settings"]["stat"] == "mean"
    assert sum("use the mean" in line for line in summary["headline"]) == 1  # named once, at the top


def test_every_reading_quotes_its_json(demo, capsys):
    """Done when: every section of the demo's report rendered, each number quoted equals its JSON's."""
    page = (demo / "report.html").read_text()
    assert page.count('class="setup"') == 4  # random features, trained MLP, LM scaling, in-context
    assert_claims_hold(demo, capsys)
    assert_comparisons_recorded(demo)
    found = assert_page_numbers_hold(demo)  # every section, the writing rules too
    for key in ("double_descent", "compression_frontier", "epoch-wise_double_descent", "loss_landscape_vs_width",
                "implicit_regularization", "scaling_law", "interpretability_across_sizes", "in-context_learning"):
        assert key in found, key


def test_mlp_part_reaches_interpolation(demo):
    summary = json.loads((demo / "summary.json").read_text())
    curve = summary["parts"]["trained-mlp"]["double_descent"]["curves"][0]
    assert curve["threshold_params"] is not None  # the wide nets fit every noisy label


def test_mlp_part_reads_the_landscape(demo):
    """The demo computes `overparam landscape` for its MLP part; the report states those numbers."""
    summary = json.loads((demo / "summary.json").read_text())
    section = summary["parts"]["trained-mlp"]["loss_landscape_vs_width"]
    doc = json.loads((demo / "trained-mlp" / "analyses" / "landscape.json").read_text())
    assert section["landscape_json"] == "fresh" and section["sentences"] == doc["sentences"]
    assert [p["barrier"] for p in section["paths"]] == [p["barrier"] for p in doc["paths"]]
    assert len(doc["paths"]) == len(section["sizes"]) >= 2  # one run per width


def test_in_context_part_reads_its_block(demo):
    """The demo's icl-markov part: its report section and headline quote the in-context block."""
    from overparam.analysis.in_context import blocks

    summary = json.loads((demo / "summary.json").read_text())
    section = summary["parts"]["in-context"]["in-context_learning"]
    block = blocks(demo / "in-context")["in_context"]
    assert [s["params"] for s in section["sizes"]] == [r["params"] for r in block["sizes"]]
    assert [s["icl_score"] for s in section["sizes"]] == [r["icl_score"] for r in block["sizes"]]
    lines = [s for s in summary["headline"] if s.startswith("In-context learning")]
    assert len(lines) == 1 and section["sentences"][-3] in lines[0]  # the largest size's ICL sentence
