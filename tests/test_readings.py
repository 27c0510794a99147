"""Issue 16, done when: every section of the examples' reports is rendered, and each number quoted in a
reading equals a number of the analysis JSON it came from; each stated comparison holds.

The shipped example specs run here with their sizes, seeds and steps shrunk so that each takes seconds
on a CPU (``SHRINK``); the demo's report gets the same checks in ``test_demo.py``. Two kinds of check
(``readings_check``): the claims a section records (number by number, comparison by comparison) against
its JSON, and a generic scan of every sentence on the rendered page, so a section added later is held to
the same rule without recording anything.
"""

import json
from pathlib import Path

import pytest
import yaml
from readings_check import (
    analyze_json,
    assert_claims_hold,
    assert_comparisons_recorded,
    assert_page_numbers_hold,
    check_claims,
    json_numbers,
    unmatched_numbers,
)

from overparam.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHRINK = {  # example → changes that keep its shape and make it fast (measured: each sweep < 10 s on 1 core)
    "rff-belkin": {"vary": {"model.width": {"geometric": [25, 2000], "count": 9, "include": [500]},
                            "seed": [0, 1]}},
    "digits-double-descent": {"vary": {"model.width": [4, 16, 64, 256], "seed": [0, 1]},
                              "train": {"steps": 300, "eval_log_points": 5}},
    "teacher-double-descent": {"vary": {"model.width": [20, 60, 95, 100, 105, 150, 200], "task.seed": [0, 1, 2]}},
    "edge-of-stability": {"train": {"steps": 120, "eval_every": 40}, "vary": {"train.lr": [0.04, 0.16],
                                                                          "model.width": [16, 64]}},
}
def shrunk(name: str) -> dict:
    spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    for key, value in SHRINK[name].items():
        spec[key] = {**spec.get(key, {}), **value} if key in ("train",) else value
    return spec


@pytest.fixture(scope="module", params=sorted(SHRINK))
def example(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name)
    spec = out / "spec.yaml"
    spec.write_text(yaml.safe_dump(shrunk(name)))
    assert main(["sweep", str(spec), "--out", str(out / "s"), "--no-progress"]) == 0
    assert main(["report", str(out / "s")]) == 0
    return out / "s"


def test_example_reports_quote_their_json(example, capsys):
    page = (example / "report.html").read_text()
    assert page.count("<h3>") >= 1 and 'class="setup"' in page and "The answer" in page
    assert_claims_hold(example, capsys)
    assert_page_numbers_hold(example)
    assert_comparisons_recorded(example)


def test_analyze_prints_the_answer_first(example, capsys):
    capsys.readouterr()
    assert main(["analyze", str(example)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    doc = analyze_json(example, capsys)
    assert first.startswith(("This task needs", "With ")) == (doc["answer"]["size"] is not None)


def test_scan_catches_a_number_that_is_not_in_the_json():
    nums, lens = json_numbers({"peak": 0.598, "n_test": 5000, "ratio": 1.851, "fraction": 0.0004, "speedup": 0.4})
    assert unmatched_numbers("peaks at 0.598 on 5,000 images, 1.85× lower, 0.04 % left, 2.5× slower", nums,
                             lens) == []
    assert unmatched_numbers("peaks at 0.6 over 0.566 (2.1×)", nums, lens) == ["0.566", "2.1×"]
    assert unmatched_numbers("Nakkiran et al. 2019 and Hewitt & Liang 2019", nums, lens) == []


def test_claims_check_catches_a_false_comparison():
    claim = {"text": "0.323 does not fall below 0.566", "numbers": [[0.323, "0.323"], [0.566, "0.566"]],
             "comparisons": [[0.323, ">=", 0.566]]}
    assert any("false" in p for p in check_claims([claim], {"a": 0.323, "b": 0.566}))
    printed = {"text": "0.132 below 0.132", "numbers": [[0.1318, "0.132"], [0.1321, "0.132"]],
               "comparisons": [[0.1318, "<", 0.1321]]}
    assert any("as printed" in p for p in check_claims([printed], {"a": 0.1318, "b": 0.1321}))


def test_report_and_analyze_refuse_a_sweep_with_no_finished_run(tmp_path, capsys):
    from overparam.spec import load_spec
    from overparam.store import Store

    spec = load_spec({"task": {"kind": "digits", "train_size": 100}, "model": {"family": "mlp"},
                      "vary": {"model.width": [2, 4]}})
    with Store.create(tmp_path) as store:
        store.add_runs(spec.runs())
    for argv in (["report", str(tmp_path)], ["analyze", str(tmp_path)], ["analyze", str(tmp_path), "--json"]):
        capsys.readouterr()
        assert main(argv) == 2
        out = capsys.readouterr()
        err = out.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("overparam: error: ") and "no finished runs" in err[0], err
        assert "2 pending" in err[0] and out.out == ""
    assert not (tmp_path / "report.html").exists()


def test_eps_and_tolerance_reach_the_report_and_agree_with_analyze(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"task": {"kind": "digits", "train_size": 200, "label_noise": 0.1},
                                    "model": {"family": "mlp"}, "vary": {"model.width": [4, 32, 128]},
                                    "train": {"steps": 150}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    for args in ([], ["--eps", "0.05", "--tolerance", "0.03"], ["--eps", "0", "--stat", "median"]):
        assert main(["report", str(tmp_path / "s"), *args]) == 0
        summary = json.loads((tmp_path / "s" / "summary.json").read_text())
        doc = analyze_json(tmp_path / "s", capsys, *args)
        dd = summary["parts"]["s"]["double_descent"]
        assert dd["curves"] == doc["curves"] and dd["answer"] == doc["answer"]
    assert doc["curves"][0]["eps"] == 0.0 and doc["curves"][0]["stat"] == "median"
    capsys.readouterr()
    for bad in (["--eps", "-1"], ["--tolerance", "nan"]):
        assert main(["report", str(tmp_path / "s"), *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1
