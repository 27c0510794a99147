"""What a new user hit in the report and on the command line: sections with nothing to say in one
line, curves counted as curves (not sizes), one heatmap per setting instead of an unstated average,
code spans as <code>, one error prefix, no nested parentheses in the readings built here."""

from __future__ import annotations

import re

import pytest
import torch
from readings import nested

from overparam.cli import main
from overparam.report.html import build_report, inline
from overparam.sweep.runner import run_sweep

torch.set_num_threads(1)

# the edge-of-stability example in small: 2 widths × 2 learning rates, full-batch GD, curves over training
TWO_BY_TWO = {"name": "eos-small",
              "task": {"kind": "teacher", "teacher": "relu", "dim": 20, "train_size": 100, "test_size": 100},
              "model": {"family": "mlp", "depth": 1},
              "train": {"optimizer": "gd", "steps": 120, "eval_every": 10, "loss": "mse"},
              "vary": {"train.lr": [0.04, 0.16], "model.width": [16, 64]}}


@pytest.fixture(scope="module")
def small_eos(tmp_path_factory):
    out = tmp_path_factory.mktemp("eos") / "eos"
    run_sweep(TWO_BY_TWO, out, progress=False)
    build_report(out)
    return out


def test_a_section_with_nothing_to_show_is_one_line(small_eos):
    page = (small_eos / "report.html").read_text()
    line = re.search(r'<p class="brief"><strong>Double descent</strong>: (.*?)</p>', page)
    assert line and "each of the two curves (one per setting of train.lr) has two sizes" in line[1]
    assert "model.width 16 and 64" in line[1] and "<h3>Double descent</h3>" not in page
    assert not list((small_eos / "figures").glob("double_descent_*.png"))  # no two-point plots
    theory = re.search(r'<p class="brief"><strong>Theory beside measurement</strong>: (.*?)</p>', page)
    assert theory and "ReLU network" in theory[1]


def test_epochwise_reading_counts_curves_and_draws_one_heatmap_per_setting(small_eos):
    from overparam.report.epochwise_section import epochwise_section
    from overparam.report.sections import SweepContext

    section = epochwise_section(SweepContext(small_eos))
    assert [name for name, _, _ in section.figures] == ["epochwise_0.png", "epochwise_1.png"]  # lr 0.04, 0.16
    captions = [c for _, _, c in section.figures]
    assert "at train.lr = 0.04" in captions[0] and "at train.lr = 0.16" in captions[1]
    counted = [s for s in section.sentences if " of 4 curves (2 sizes of model.width × 2 settings of train.lr)" in s
               or s.startswith("No curve shows")]
    assert counted, section.sentences
    assert not any(" of 4 sizes" in s for s in section.sentences)


def test_code_spans_render_as_code_and_text_stays_escaped():
    assert inline("rerun `overparam landscape DIR` <now>") == \
        "rerun <code>overparam landscape DIR</code> &lt;now&gt;"
    assert inline("a lone ` backtick") == "a lone ` backtick"


def test_usage_errors_name_the_command_once(capsys):
    assert main(["sweep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overparam: error: sweep: ") and "overparam sweep" not in err


def test_the_nested_parenthesis_check_sees_nesting():
    assert nested("(158 features (1,580 parameters))") and not nested("(a) and (b)")
