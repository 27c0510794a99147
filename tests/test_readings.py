"""Issue 16, done when: every section of the examples' reports is rendered, and each number quoted in a
reading equals a number of the analysis JSON it came from; each stated comparison holds.

Every shipped example spec runs here with its sizes, seeds and steps shrunk so that it takes seconds on a
CPU (``example_runs.SHRINK``), with the follow-up analyses its report reads (compress, landscape); the
demo's report gets the same checks in ``test_demo.py``. Two kinds of check (``readings_check``): the
claims a section records (number by number, comparison by comparison) against its JSON, and a generic
scan of every sentence on the rendered page, so a section added later is held to the same rule without
recording anything. Each example is swept once per module (``example``) and read by every test.
"""

import json

import pytest
import yaml
from example_runs import EXAMPLES, NEEDS_DATA, SHARED_DATA, SHRINK, run_example
from readings_check import (
    analyze_json,
    assert_claims_hold,
    assert_comparisons_recorded,
    assert_page_numbers_hold,
    check_claims,
    json_numbers,
    page_readings,
    style_problems,
    unmatched_numbers,
)

from overparam.cli import main
from overparam.report.in_context_reading import READERS

# The sections each example's report must render (summary.json keys): together with the demo's, every section.
SECTIONS = {
    "rff-belkin": {"double_descent"},
    "digits-double-descent": {"double_descent", "epoch-wise_double_descent", "loss_landscape_vs_width"},
    "teacher-double-descent": {"double_descent", "theory_beside_measurement"},
    "edge-of-stability": {"implicit_regularization", "epoch-wise_double_descent"},
    "own-task-wine": {"double_descent", "loss_landscape_vs_width"},
    "table-wine": {"double_descent", "implicit_regularization", "compression_frontier"},
    "own-model-digits": {"double_descent"},
    "arrays-digits": {"double_descent"},
    "images-digits": {"double_descent", "loss_landscape_vs_width"},
    "hf-digits": {"double_descent"},
    "hf-descr-lm": {"scaling_law", "interpretability_across_sizes"},
    "hf-causal-lm-scaling": {"scaling_law", "loss_by_position_in_the_context"},
    "lm-scaling": {"scaling_law", "loss_by_position_in_the_context"},
    "markov-scaling": {"scaling_law"},
    "icl-markov": {"scaling_law", "in-context_learning"},
    "fewshot": {"few-shot_learning"},
    "long-context": {"loss_by_position_in_the_context"},
    "specialization": {"scaling_law", "specialized_vs_generic"},
    "mnist-cnn": {"double_descent"},
    "cifar10-cnn-double-descent": {"double_descent"},
    "cifar10-resnet18k-double-descent": {"double_descent"},
}
LANGUAGE = {"hf-descr-lm", "hf-causal-lm-scaling", "lm-scaling", "markov-scaling", "icl-markov", "fewshot",
            "long-context", "specialization"}


def test_every_example_is_shrunk_here():
    assert set(SHRINK) == {p.stem for p in EXAMPLES.glob("*.yaml")} == set(SECTIONS)


@pytest.fixture(scope="module", params=sorted(SHRINK))
def example(request, tmp_path_factory):
    name = request.param
    if name in NEEDS_DATA and not SHARED_DATA.is_dir():
        pytest.skip(f"{name} reads ../shared/data, absent here")
    return name, run_example(name, tmp_path_factory.mktemp(name))


def test_example_reports_quote_their_json(example, capsys):
    name, sweep = example
    page = (sweep / "report.html").read_text()
    assert 'class="setup"' in page and "The answer" in page
    assert_claims_hold(sweep, capsys)
    found = assert_page_numbers_hold(sweep)
    assert SECTIONS[name] <= set(found), SECTIONS[name] - set(found)
    assert_comparisons_recorded(sweep)


def test_analyze_prints_what_applies(example, capsys):
    """The answer first; then the double-descent reading, or for language models the blocks that read them."""
    name, sweep = example
    capsys.readouterr()
    assert main(["analyze", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    doc = analyze_json(sweep, capsys)
    assert lines[0].startswith(("This task needs", "With ")) == (doc["answer"]["size"] is not None)
    text = "\n".join(lines)
    assert not any(style_problems(line) for line in lines), text
    if name in LANGUAGE:
        assert "interpolat" not in text and "peak" not in text, text
        assert "scaling law" in text, text
        for key, (heading, _) in READERS.items():  # the blocks this sweep measured, each under its heading
            assert (f"{heading}:" in lines) == (key in doc), (key, text)
    else:
        assert "curve over" in text


def test_scan_catches_a_number_that_is_not_in_the_json():
    nums, lens = json_numbers({"peak": 0.598, "n_test": 5000, "ratio": 1.851, "fraction": 0.0004, "speedup": 0.4})
    assert unmatched_numbers("peaks at 0.598 on 5,000 images, 1.85× lower, 0.04 % left, 2.5× slower", nums,
                             lens) == []
    assert unmatched_numbers("peaks at 0.6 over 0.566 (2.1×)", nums, lens) == ["0.566", "2.1×"]
    assert unmatched_numbers("Nakkiran et al. 2019 and Hewitt & Liang 2019", nums, lens) == []


def test_style_check_catches_what_a_reader_trips_on():
    assert style_problems("peaks at 0.598 (5,000 images; about 2 standard errors): weak evidence") == []
    assert style_problems("(158 features (1,580 parameters))") == ["a parenthesis inside another"]
    assert style_problems("run `overparam landscape DIR`") == ["a raw backtick"]
    assert style_problems("ratio n/a; regime n/a") == ["n/a without its reason"]
    assert style_problems("ratio n/a: no 2/lr line for adam") == []
    assert style_problems("E = None") and style_problems("With task.mix = [{'name': 'docs'}]")


def test_page_parser_reads_brief_sections_and_the_answer():
    page = ('<section class="part lead"><ul class="reading"><li><strong>This task needs 8.</strong></li></ul>'
            '</section><section class="part" id="s"><p class="setup">Setup: digits.</p>'
            '<p class="brief"><strong>Double descent</strong>: not read: two sizes.</p><h3>Scaling law</h3>'
            '<ul class="reading"><li>L(N) with <code>fit</code>.</li></ul></section>')
    assert page_readings(page) == [(None, None, "This task needs 8."), ("s", None, "Setup: digits."),
                                   ("s", "Double descent", "not read: two sizes."),
                                   ("s", "Scaling law", "L(N) with fit.")]


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
