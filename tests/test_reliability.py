"""Bad input never ends in a traceback, always in one line and exit 2, and never harms a good store."""

import html
import re

import pytest
from bad_input_corpus import CASES, make_good_store, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overparam.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_good_store(tmp_path_factory.mktemp("good") / "sweep")


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_case(case, good, tmp_path):
    outcome = run_case(case, tmp_path, good)
    assert outcome.ok, f"{case.name}: {outcome.why}"


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8))
KEYS = st.sampled_from(["kind", "width", "depth", "lr", "steps", "train_size", "label_noise", "family",
                        "optimizer", "batch_size", "seed", "features", "bandwidth", "zzz"])
SECTION = st.dictionaries(KEYS, SCALARS, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task=SECTION, model=SECTION, train=SECTION)
def test_fuzzed_specs_never_crash(tmp_path, task, model, train):
    import yaml

    from overparam.errors import OverparamError
    from overparam.spec import Spec

    data = {"task": {"kind": "digits", **task}, "model": {"family": "mlp", **model}, "train": train}
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    try:
        spec = Spec(yaml.safe_load(text))
        spec.runs()
    except OverparamError:
        pass  # a clear, expected refusal


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats(), st.floats()),
                     max_size=6), header=st.sampled_from(["params,tokens,loss", "params,loss", "a,b,c", ""]))
def test_fuzzed_fit_csv_never_crashes(tmp_path, capsys, rows, header):
    path = tmp_path / "pts.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    code = main(["fit", "--csv", str(path), "--bootstrap", "0", "--no-backtest", "--json"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err


@settings(max_examples=40, deadline=None)
@given(argv=st.lists(st.sampled_from(["sweep", "runs", "analyze", "fit", "theory", "--json", "--out", "x",
                                      "--eps", "-3", "--csv", "ridgeless", "--gamma", "0:1", "nan", "--bootstrap",
                                      "report", "advise", "--compute", "1e9"]), max_size=5))
def test_fuzzed_arguments_never_crash(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help / --version exit through argparse
            code = exc.code
    assert code in (0, 2, None) and "Traceback" not in err.getvalue()


def test_report_escapes_user_strings(tmp_path):
    from overparam.report.html import build_report
    from overparam.sweep.runner import run_sweep

    evil = "<script>alert(1)</script>"
    run_sweep({"name": evil, "task": {"kind": "digits", "train_size": 100}, "model": {"family": "rff"},
               "train": {"optimizer": "min_norm"}, "vary": {"model.width": [20, 200]}}, tmp_path, progress=False)
    page = build_report(tmp_path).read_text()
    assert evil not in page
    assert html.escape(evil) in page
    assert not re.search(r"<script[^>]*>\s*alert", page)
