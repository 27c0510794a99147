"""The scaling analysis of an LM sweep and its report section, against a known law.

A sweep directory is written by hand through the store, with losses drawn from
L = E + A/N^α + B/D^β (times a little noise), so the truth the analysis must recover is known;
on a markov task the exact entropy rate is E itself. One end-to-end run trains the quick demo part.
"""

from __future__ import annotations

import json
import math
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
from readings_check import check_claims

from overparam.analysis.scaling_report import (
    analyze_scaling_sweep,
    doubling_threshold,
    law_loss,
    load_or_analyze,
    num,
    optimum,
)
from overparam.errors import OverparamError
from overparam.report.html import build_report
from overparam.report.scaling_section import scaling_section
from overparam.report.sections import BUILDERS, SweepContext
from overparam.spec import Spec
from overparam.store import Store

TRUTH = {"E": 1.2, "A": 100.0, "B": 100.0, "alpha": 0.4, "beta": 0.35}
WIDTHS = [16, 32, 64, 128, 256]
STEPS = [100, 316, 1000, 3162]
# N and D both grow ×√10 per step, so runs on an anti-diagonal share C = 6ND: IsoFLOP groups
SIZE = {w: 1e4 * 10 ** (i / 2) for i, w in enumerate(WIDTHS)}


def lm_spec(kind: str, widths: list[int], steps: list[int], extra: dict | None = None) -> Spec:
    task = {"kind": "markov", "train_size": 10_000, "test_size": 2_000} if kind == "markov" else {
        "kind": "text", "tokenizer": "char"}
    return Spec({"name": f"synthetic-{kind}", "task": task,
                 "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 16},
                 "train": {"optimizer": "adamw", "batch_size": 4},
                 "vary": {"model.d_model": widths, "train.steps": steps, **(extra or {})}})


def write_sweep(directory: Path, kind: str = "text", widths=WIDTHS, steps=STEPS, noise: float = 0.002,
                truth=TRUTH, extra: dict | None = None, shift=None) -> Path:
    """A finished sweep whose test losses follow ``truth``; 25 tokens per step (D = 25 · steps · 100).
    ``extra``: more axes to vary; ``shift(config)``: a loss offset per run (another setting, another task)."""
    spec = lm_spec(kind, widths, steps, extra)
    rng = np.random.default_rng(0)
    with Store.create(directory) as store:
        store.set_meta("name", spec.name)
        store.set_meta("spec", spec.to_dict())
        store.set_meta("size_axes", spec.size_axes())
        store.add_runs(spec.runs())
        for run in spec.runs():
            n, d = SIZE[run.config["model"]["d_model"]], 1e3 * run.config["train"]["steps"]
            loss = (float(law_loss(truth, n, d)) + (shift(run.config) if shift else 0.0)) * (
                1 + noise * rng.standard_normal())
            metrics = {"train_loss": loss, "test_loss": loss, "tokens": d, "train_error": None,
                       "test_error": None}
            if kind == "markov":
                metrics["entropy_rate"] = truth["E"]
            store.record(run.id, "done", int(n), 6.3 * n * d, metrics, [], 0.1)
    return directory


@pytest.fixture(scope="module")
def text_sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("lm") / "sweep")


@pytest.fixture(scope="module")
def text_doc(text_sweep) -> dict:
    return analyze_scaling_sweep(text_sweep, bootstrap=100, seed=0)


def test_recovers_the_constants_of_a_known_law(text_doc):
    p, ci = text_doc["fit"]["params"], text_doc["fit"]["ci"]
    assert text_doc["law"] == "chinchilla" and text_doc["fallback"] is None
    assert text_doc["fit"]["n_points"] == len(WIDTHS) * len(STEPS)
    for k in ("alpha", "beta"):
        assert p[k] == pytest.approx(TRUTH[k], abs=0.03), k
    assert p["E"] == pytest.approx(TRUTH["E"], rel=0.05)
    for k, v in TRUTH.items():  # 0.2 % noise: the truth lies inside every 95 % interval
        assert ci[k][0] <= v <= ci[k][1], (k, ci[k])
    assert text_doc["fit"]["in_sample_mean_abs_rel_error"] < 0.005


def test_frontier_backtest_and_thresholds_follow_the_formulas(text_doc):
    co, p = text_doc["compute_optimal"], text_doc["fit"]["params"]
    assert co["flops"] == pytest.approx(6 * SIZE[WIDTHS[-1]] * 1e3 * STEPS[-1])  # C = 6ND, not stored FLOPs
    n, d, loss = optimum(p, co["flops"])
    assert (co["params"], co["tokens"], co["loss"]) == pytest.approx((n, d, loss))
    assert 6 * co["params"] * co["tokens"] == pytest.approx(co["flops"])
    assert co["ci"]["params"][0] <= co["params"] <= co["ci"]["params"][1]
    flops = [r["flops"] for r in text_doc["frontier"]]
    assert flops == sorted(flops) and len(flops) == 7
    bt = text_doc["backtest"]
    assert bt["held_out_from"] == SIZE[WIDTHS[-1]] and bt["n_test"] == len(STEPS)
    assert bt["mean_abs_rel_error"] < 0.01  # a law that holds extrapolates
    assert bt["naive_mean_abs_rel_error"] > 5 * bt["mean_abs_rel_error"]
    dr = text_doc["diminishing_returns"]["params"]
    x = dr["value"]
    assert law_loss(p, x) - law_loss(p, 2 * x) == pytest.approx(0.01, rel=1e-9)
    assert doubling_threshold(p["A"], p["alpha"], 0.01) == pytest.approx(x)
    groups = text_doc["isoflop"]["groups"]
    assert max(len(g["run_ids"]) for g in groups) == 4  # the longest anti-diagonal of a 5 × 4 grid


def test_sentences_carry_the_fitted_numbers(text_doc):
    p, co = text_doc["fit"]["params"], text_doc["compute_optimal"]
    text = " ".join(text_doc["sentences"])
    assert f"N^{p['alpha']:.2f}" in text and f"D^{p['beta']:.2f}" in text
    assert num(co["params"]) in text and num(co["tokens"]) in text
    assert f"{100 * text_doc['backtest']['mean_abs_rel_error']:.2g} %" in text
    assert "95 % bootstrap intervals (100 resamples)" in text
    assert text_doc["headline"] == text_doc["sentences"][:len(text_doc["headline"])]
    stored = json.loads((Path(text_doc["directory"]) / "analyses" / "scaling.json").read_text())
    assert stored["sentences"] == text_doc["sentences"]


def test_every_recorded_claim_holds_against_the_document(text_doc):
    """Each number a sentence quotes is the document's, each comparison it states holds (readings_check)."""
    assert text_doc["sentences"] == [c["text"] for c in text_doc["claims"]]
    assert check_claims(text_doc["claims"], {k: v for k, v in text_doc.items() if k != "claims"}) == []
    assert sum(len(c["numbers"]) for c in text_doc["claims"]) >= 20
    assert any(c["comparisons"] for c in text_doc["claims"])  # too high / too low, inside / beyond the sweep


def test_a_setting_besides_size_and_tokens_gets_a_law_of_its_own(tmp_path):
    """Two learning rates, one a constant 0.3 nats worse: one law over both would blur the two; each setting's
    own law recovers the truth, and E differs by the offset."""
    directory = write_sweep(tmp_path / "lr", widths=WIDTHS[:4], steps=STEPS[:3], extra={"train.lr": [0.001, 0.01]},
                            shift=lambda c: 0.3 if c["train"]["lr"] == 0.01 else 0.0)
    doc = analyze_scaling_sweep(directory, bootstrap=0)
    assert doc["split"]["axes"] == ["train.lr"] and doc["law"] is None
    by_lr = {s["fixed"]["train.lr"]: s for s in doc["settings"]}
    assert set(by_lr) == {0.001, 0.01} and all(s["law"] == "chinchilla" and s["n_runs"] == 12 for s in by_lr.values())
    for lr, setting in by_lr.items():
        p = setting["fit"]["params"]
        assert p["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.15), lr
    assert by_lr[0.01]["fit"]["params"]["E"] - by_lr[0.001]["fit"]["params"]["E"] == pytest.approx(0.3, abs=0.1)
    assert doc["sentences"][0].startswith("The runs differ in train.lr as well as in size and tokens")
    assert sum(s.startswith("train.lr = 0.01: scaling fit") for s in doc["sentences"]) == 1
    assert check_claims(doc["claims"], {k: v for k, v in doc.items() if k != "claims"}) == []
    section = scaling_section(SweepContext(directory))
    assert section.figures[0][0] == "scaling_settings.png" and len(section.tables) == 2  # a frontier per setting


def test_section_renders_figures_and_the_report_builds(text_sweep, text_doc):
    html = build_report(text_sweep).read_text()
    section = html.split("<h3>Scaling law</h3>")[1].split("<h3>")[0].split("<details>")[0]
    assert section.count("data:image/png;base64,") == 4 and "N_opt (params)" in section
    for name in ("loss_vs_params", "loss_vs_tokens", "loss_vs_compute", "isoflop"):
        png = (text_sweep / "figures" / f"scaling_{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
    for sentence in text_doc["sentences"]:  # read from the stored document, escaped once
        assert html_escape(sentence) in section
    summary = json.loads((text_sweep / "summary.json").read_text())["parts"]["sweep"]["scaling_law"]
    assert summary["law"] == "chinchilla" and summary["fit"]["params"] == text_doc["fit"]["params"]
    assert "samples" not in summary["fit"]  # the bootstrap draws stay in analyses/scaling.json
    assert any(getattr(b, "__name__", "") == "scaling_section" for b in BUILDERS)


def test_markov_compares_fitted_E_with_the_exact_entropy_rate(tmp_path):
    doc = analyze_scaling_sweep(write_sweep(tmp_path / "markov", kind="markov", widths=WIDTHS[:4]), bootstrap=50)
    chk = doc["entropy_check"]
    assert chk["entropy_rate"] == TRUTH["E"] and chk["inside"] is True
    assert abs(chk["E_minus_H"]) < 0.05
    assert any(f"exact entropy rate is H = 1.2 nats/token and the fitted E is {chk['E']:.4g}" in s
               for s in doc["sentences"])


def test_too_few_budgets_fall_back_to_a_power_law_in_N(tmp_path):
    doc = analyze_scaling_sweep(write_sweep(tmp_path / "narrow", widths=[16, 32, 64, 128], steps=[100, 316]),
                                bootstrap=50)
    assert doc["law"] == "power-params" and "3 token budgets" in doc["fallback"]["reason"]
    assert "× 2 token budgets (100k–316k tokens): the joint law needs at least 3" in doc["sentences"][0]
    assert doc["fallback"]["tokens"] == 316_000 and doc["frontier"] is None
    assert doc["backtest"]["n_train"] == 3 and doc["backtest"]["n_test"] == 1
    assert doc["sentences"][0].startswith("No joint law L(N, D) from 8 runs")
    section = scaling_section(SweepContext(tmp_path / "narrow"))
    assert len(section.figures) == 4 and not section.tables  # IsoFLOP pairs still drawn, no frontier


def test_three_runs_say_they_check_nothing_and_two_are_refused(tmp_path):
    doc = analyze_scaling_sweep(write_sweep(tmp_path / "three", widths=[16, 32, 64], steps=[100]), bootstrap=0)
    assert doc["backtest"]["skipped"].startswith("3 sizes") and doc["fit"]["exact"]
    # three constants through three points: the reading quotes the points, never the constants they force
    pts = doc["fallback"]["exact_points"]
    assert [p["params"] for p in pts] == sorted(doc["grid"]["params"]) and len(pts) == 3
    first = doc["sentences"][0]
    assert "Nor a law in N alone: 3 sizes at the largest budget (100k tokens) fix the 3 constants" in first
    losses = ", ".join(f"{p['loss']:.3g}" for p in pts[:2]) + f" and {pts[2]['loss']:.3g} nats/token"
    assert losses in first and "N^" not in first.replace("E + A/N^α", "")
    assert "[" not in " ".join(doc["sentences"]) and len(doc["sentences"]) == 1
    section = scaling_section(SweepContext(tmp_path / "three"))
    assert any("No law drawn" in caption for _, _, caption in section.figures)
    assert not any(s.startswith(("The fit misses", "No extrapolation", "Point of")) for s in doc["sentences"])
    with pytest.raises(OverparamError, match="at least 3"):
        analyze_scaling_sweep(write_sweep(tmp_path / "two", widths=[16, 32], steps=[100]), bootstrap=0)


def test_one_size_gives_no_law_but_the_section_still_draws_the_runs(tmp_path):
    directory = write_sweep(tmp_path / "one", widths=[32], steps=[100, 316, 1000])
    doc = analyze_scaling_sweep(directory, bootstrap=0)
    assert doc["law"] is None and doc["fit"] is None and doc["backtest"] is None
    assert doc["sentences"][0].startswith("No scaling law from 3 runs")
    section = scaling_section(SweepContext(directory))
    assert [n for n, _, _ in section.figures] == ["scaling_loss_vs_params.png", "scaling_loss_vs_tokens.png",
                                                   "scaling_loss_vs_compute.png"]  # no IsoFLOP pair


def test_a_stale_analysis_is_recomputed(tmp_path):
    directory = write_sweep(tmp_path / "grow", widths=[16, 32, 64], steps=[100])
    first = load_or_analyze(directory, bootstrap=0)
    assert "skipped" in first["backtest"]
    stored = directory / "analyses" / "scaling.json"
    stamp = stored.stat().st_mtime_ns
    assert load_or_analyze(directory, bootstrap=0) == first and stored.stat().st_mtime_ns == stamp  # read back
    write_sweep(directory, widths=[16, 32, 64, 128], steps=[100])  # the sweep grew
    again = load_or_analyze(directory, bootstrap=0)
    assert len(again["run_ids"]) == 4 and again["backtest"]["n_test"] == 1


def test_non_lm_sweeps_get_no_section(tmp_path):
    spec = Spec({"name": "digits", "task": {"kind": "digits"}, "model": {"family": "mlp", "width": 8}})
    with Store.create(tmp_path / "d") as store:
        store.add_runs(spec.runs())
        store.record(spec.runs()[0].id, "done", 100, 1e6, {"test_error": 0.1, "test_loss": 0.3}, [], 0.1)
    assert scaling_section(SweepContext(tmp_path / "d")) is None


@pytest.mark.slow
def test_quick_demo_part_end_to_end(tmp_path):
    """Train the quick LM part for real (≈ 8 s of CPU), run the demo hook, build the report."""
    import torch

    from overparam.demo_lm import after_sweep, lm_scaling_spec
    from overparam.sweep.runner import run_sweep

    threads = torch.get_num_threads()
    try:
        run_sweep(lm_scaling_spec(quick=True), tmp_path / "lm", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    out = after_sweep(tmp_path / "lm", quick=True)
    doc = json.loads((tmp_path / "lm" / "analyses" / "scaling.json").read_text())
    assert len(doc["points"]) == 8 and doc["law"] == "power-params"  # 2 budgets: L(N) at the larger
    assert out["headline"][0].startswith("Language models: no joint law")
    assert re.search(r"L\(N\) = [\d.]+ \+ [\d.]+k?/N\^[\d.]+", out["headline"][0])
    assert all(math.isfinite(v) for v in doc["fit"]["params"].values())
    section = scaling_section(SweepContext(tmp_path / "lm"))  # the whole report: test_demo's business
    assert len(section.figures) == 4 and section.sentences == doc["sentences"]
    assert any(s.startswith("Extrapolation check") for s in section.sentences)
