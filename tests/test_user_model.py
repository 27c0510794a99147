"""The user's own model (``model.family: "file.py:factory"``): spec checks, init seeding, counts, fused == loop,
fallbacks, provenance, and the commands that rebuild a run through its factory."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from overparam.cli import main
from overparam.data import load_task
from overparam.errors import SpecError
from overparam.models import cnn, family_module, mlp
from overparam.spec import Spec
from overparam.store import Store
from overparam.sweep.runner import run_sweep
from overparam.train.fused.functional import train_functional_group
from overparam.train.run import shape_of, train_run

pytestmark = pytest.mark.usefixtures("one_thread")
NETS = Path(__file__).with_name("user_nets.py")
TASK = {"kind": "digits", "train_size": 120, "test_size": 200}


def ref(name: str, path: Path = NETS) -> str:
    return f"{path}:{name}"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("overparam: error: ")
    return err[0]


def task_shape(task: dict):
    from overparam.options import resolve_section

    return shape_of(load_task(resolve_section("task", family_task_options(task["kind"]), task)))


def family_task_options(kind: str):
    from overparam.data import task_module

    return task_module(kind).OPTIONS


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


# -- the spec ---------------------------------------------------------------------------------------------

def test_unknown_key_is_rejected_with_the_accepted_list():
    with pytest.raises(SpecError) as err:
        Spec({"task": TASK, "model": {"family": ref("Net"), "widht": 8}})
    msg = str(err.value)
    assert msg.startswith("model.widht: Net in ") and "takes no keyword 'widht'" in msg
    assert "(accepted: width, scale)" in msg  # input_shape, num_outputs, dropout are injected, never keys
    with pytest.raises(SpecError, match=r"vary.model.depth: Net .* takes no keyword 'depth'"):
        Spec({"task": TASK, "model": {"family": ref("Net")}, "vary": {"model.depth": [1, 2]}})
    with pytest.raises(SpecError, match="model.width: expected integer"):
        Spec({"task": TASK, "model": {"family": ref("Net"), "width": "wide"}})
    with pytest.raises(SpecError, match="model.input_shape: Net .* takes no keyword"):  # injected, not a key
        Spec({"task": TASK, "model": {"family": ref("Net"), "input_shape": [64]}})


def test_kwargs_take_any_key_and_types_come_from_defaults():
    spec = Spec({"task": TASK, "model": {"family": ref("with_kwargs"), "bias": False, "note": "x"}})
    assert spec.base["model"] == {"family": ref("with_kwargs"), "bias": False, "note": "x"}
    family = family_module(ref("with_kwargs"))
    shape = shape_of(load_task(spec.base["task"]))
    assert family.count_params(spec.base["model"], shape) == 64 * 10  # no bias: the keyword reached the factory
    assert family_module(ref("Net")).OPTIONS["scale"].type is float  # from the default 1.0
    assert family_module(ref("Net")).SIZE_KEYS == ("width",)  # the integer keys
    assert family_module(ref("regression_net")).SIZE_KEYS == ("width",)  # its size_keys attribute


@pytest.mark.parametrize("family, train, expected", [
    ("nowhere.py:make", {}, "no such file 'nowhere.py'"),
    (ref("missing"), {}, "user_nets.py has no attribute 'missing'"),
    ("no_such_module_xyz:make", {}, "cannot import module 'no_such_module_xyz'"),
    (ref("needs_width"), {}, "model.width: required by needs_width"),
    (ref("with_batchnorm"), {"dropout": 0.1}, "train.dropout: with_batchnorm"),  # it takes no dropout keyword
])
def test_bad_references_are_one_line_errors(tmp_path, capsys, family, train, expected):
    spec = write_spec(tmp_path / "s.yaml", {"task": TASK, "model": {"family": family},
                                            "train": {"steps": 2, **train}})
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "out").exists()  # refused before the store


@pytest.mark.parametrize("name, expected", [("not_a_module", "returned a str, not a torch.nn.Module"),
                                            ("raises", "raised ValueError: width 8 is not supported")])
def test_factory_failures_are_refused_before_training(tmp_path, capsys, name, expected):
    spec = write_spec(tmp_path / "s.yaml", {"task": TASK, "model": {"family": ref(name)}, "train": {"steps": 2}})
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert ref(name) in line and expected in line
    assert not (tmp_path / "out").exists()


def test_a_forward_that_fails_leaves_no_store_and_the_fixed_file_sweeps(tmp_path, capsys):
    """A module that cannot run one example is refused before the sweep directory exists; after the user
    fixes the file, the same --out sweeps (no run was trained from the broken file, so nothing to protect)."""
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\ndef make(input_shape, num_outputs, width: int = 4):\n"
                   "    return nn.Linear(5, num_outputs)\n")
    spec = write_spec(tmp_path / "s.yaml", {"task": TASK, "model": {"family": f"{net}:make"}, "train": {"steps": 2}})
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "the model's forward failed on one example" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()
    net.write_text("from torch import nn\ndef make(input_shape, num_outputs, width: int = 4):\n"
                   "    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_outputs))\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert Store.open(tmp_path / "out").runs()[0]["status"] == "done"


def test_a_store_without_trained_runs_takes_the_changed_file(tmp_path):
    """Provenance protects results: a store whose runs never finished records the file anew."""
    from overparam.provenance import MODEL_KEY as META_KEY
    from overparam.provenance import check_and_record

    net = tmp_path / "net.py"
    net.write_text("from torch import nn\ndef make(input_shape, num_outputs):\n    return nn.Linear(64, num_outputs)\n")
    family = f"{net}:make"
    spec = Spec({"task": TASK, "model": {"family": family}, "train": {"steps": 2}})
    with Store.create(tmp_path / "out") as store:
        store.add_runs(spec.runs())
        check_and_record(store, family)
        first = store.meta(META_KEY)[family]["sha256"]
        net.write_text(net.read_text() + "# edited\n")
        check_and_record(store, family)  # pending only: accepted, and the new hash recorded
        assert store.meta(META_KEY)[family]["sha256"] != first


def test_a_file_that_fails_to_import_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\ndef make(input_shape, num_outputs):\n    return torch.nn.Linear(\n")
    spec = write_spec(tmp_path / "s.yaml", {"task": TASK, "model": {"family": f"{bad}:make"}})
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert f"importing {bad} failed (SyntaxError" in line


def test_a_file_imports_its_neighbours(tmp_path):
    (tmp_path / "blocks.py").write_text("from torch import nn\nWIDTH = 5\n")
    (tmp_path / "net.py").write_text("from torch import nn\nimport blocks\n"
                                     "def make(input_shape, num_outputs):\n"
                                     "    return nn.Linear(64, blocks.WIDTH)\n")
    family = family_module(f"{tmp_path / 'net.py'}:make")
    assert family.count_params({"family": "x"}, task_shape(TASK)) == 64 * 5 + 5


# -- init, parameters, FLOPs ------------------------------------------------------------------------------

def test_same_seed_same_init_different_seed_different_init():
    family = family_module(ref("Net"))
    shape = task_shape(TASK)
    cfg = {"family": ref("Net"), "width": 8, "scale": 1.0}
    before = torch.get_rng_state()
    a, b, c = (family.build(cfg, shape, seed).state_dict() for seed in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is restored
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))


@pytest.mark.parametrize("depth", [1, 2])
def test_params_and_flops_match_the_mlp_formulas(depth):
    shape = task_shape(TASK)
    cfg = {"width": 24, "depth": depth}
    family = family_module("user_nets:mlp")  # a package.module reference
    user = {"family": "user_nets:mlp", **cfg}
    assert family.count_params(user, shape) == mlp.count_params(cfg, shape)
    want = mlp.flops_per_example(cfg, shape)
    assert abs(family.flops_per_example(user, shape) - want) <= 0.01 * want


def test_flops_match_the_cnn_formula():
    shape = task_shape({"kind": "digits", "train_size": 50, "test_size": 50})  # 8×8 images as 64 features
    family = family_module(ref("cnn"))
    user = {"family": ref("cnn"), "width": 3}
    assert family.count_params(user, shape) == cnn.count_params({"width": 3}, shape)
    want = cnn.flops_per_example({"width": 3}, shape)
    assert abs(family.flops_per_example(user, shape) - want) <= 0.01 * want


# -- training: fused == loop ------------------------------------------------------------------------------

def _compare(fused, alone, tol=1e-10):
    assert fused.status == alone.status
    assert [s for s, _ in fused.curve] == [s for s, _ in alone.curve]
    for (_, f), (_, a) in zip(fused.curve, alone.curve):
        assert set(f) == set(a)
        assert all(math.isclose(f[k], a[k], rel_tol=0, abs_tol=tol) for k in a if a[k] is not None)
    if alone.status == "done":
        assert fused.metrics["fused"] and list(fused.state) == list(alone.state)
        for k, v in alone.state.items():
            assert fused.state[k].dtype == v.dtype and float((fused.state[k] - v).abs().max()) <= tol, k
    else:
        assert fused.metrics["diverged_at"] == alone.metrics["diverged_at"]


def test_fused_equals_the_loop_in_float64_and_a_diverging_member_is_isolated():
    spec = Spec({"task": {**TASK, "label_noise": 0.2},
                 "model": {"family": ref("Net"), "width": 8},
                 "train": {"optimizer": "sgd", "momentum": 0.9, "steps": 14, "batch_size": 32, "dtype": "float64",
                           "eval_every": 5, "weight_decay": 1e-3, "loss": "mse"},
                 "vary": {"seed": [0, 1], "train.dropout": [0.0, 0.25], "task.noise_seed": [5, 6],
                          "train.lr": [0.05, 1e3]}})
    runs = spec.runs()
    task = load_task(runs[0].config["task"])
    cpu = torch.device("cpu")
    dropout_on = [r for r in runs if r.config["train"]["dropout"] > 0]  # one fuse class: the factory's structure
    fused = train_functional_group([r.config for r in dropout_on], task, cpu)
    alone = [train_run(r.config, load_task(r.config["task"]), cpu) for r in dropout_on]  # own label noise
    assert {f.status for f in fused} == {"done", "diverged"}  # lr 1e3 under MSE diverges; the others train on
    for f, a in zip(fused, alone):
        _compare(f, a)
    # the diverging members changed nothing for the others: a group of the healthy ones alone agrees
    calm = [i for i, r in enumerate(dropout_on) if r.config["train"]["lr"] < 1]
    for i, f in zip(calm, train_functional_group([dropout_on[i].config for i in calm], task, cpu)):
        assert fused[i].status == "done"
        _compare(f, fused[i], tol=0.0)


def test_regression_fuses_exactly():
    spec = Spec({"task": {"kind": "teacher", "dim": 6, "outputs": 2, "train_size": 40, "test_size": 30},
                 "model": {"family": ref("regression_net"), "width": 5},
                 "train": {"optimizer": "adam", "lr": 1e-2, "steps": 10, "batch_size": 16, "dtype": "float64",
                           "eval_every": 5, "clip": 0.5},
                 "vary": {"seed": [0, 1, 2]}})
    runs = spec.runs()
    task = load_task(runs[0].config["task"])
    fused = train_functional_group([r.config for r in runs], task, torch.device("cpu"))
    for f, r in zip(fused, runs):
        _compare(f, train_run(r.config, task, torch.device("cpu")))


@pytest.mark.parametrize("name, why", [("with_batchnorm", "BatchNorm1d '2' updates running statistics"),
                                       ("draws_itself", "vmap cannot run the model's forward")])
def test_an_unfusable_module_trains_with_the_loop_and_says_why(tmp_path, name, why):
    spec = {"task": TASK, "model": {"family": ref(name)}, "train": {"steps": 3, "batch_size": 16},
            "vary": {"seed": [0, 1, 2]}}
    summary = run_sweep(spec, tmp_path, fuse="on", device="cpu", progress=False)
    assert summary.trained == 3 and not summary.failed
    assert len(summary.notes) == 1 and summary.notes[0].startswith(f"3 runs of {ref(name)} train one at a time")
    assert why in summary.notes[0]
    with Store.open(tmp_path) as store:
        assert all("fused" not in r["metrics"] for r in store.runs())


def test_fuse_on_stores_the_same_runs_as_the_loop(tmp_path):
    from exactness import assert_sweep_same_fused_and_unfused

    spec = {"task": TASK, "model": {"family": ref("Net"), "width": 6},
            "train": {"steps": 6, "batch_size": 32, "dtype": "float64"}, "vary": {"seed": [0, 1, 2]}}
    assert_sweep_same_fused_and_unfused(spec, tmp_path, 3, "test_loss")


# -- through the CLI: sweep a keyword, analyze, report; provenance ----------------------------------------

@pytest.fixture(scope="module")
def user_sweep(tmp_path_factory):
    """The example model file, copied (tests change it), swept over width."""
    d = tmp_path_factory.mktemp("user")
    net = d / "tiny_net.py"
    shutil.copy(Path(__file__).parents[1] / "examples" / "models" / "tiny_net.py", net)
    spec = write_spec(d / "spec.yaml", {
        "name": "own", "task": {"kind": "digits", "train_size": 150, "test_size": 300, "label_noise": 0.1},
        "model": {"family": f"{net}:make_net", "blocks": 1},
        "train": {"steps": 40, "batch_size": 32, "lr": 0.01, "eval_every": 10},
        "vary": {"model.width": [2, 8, 32], "seed": [0, 1]}})
    assert main(["sweep", str(spec), "--out", str(d / "out"), "--no-progress"]) == 0
    return d


def test_a_user_factory_sweeps_analyzes_and_reports(user_sweep, capsys):
    out = user_sweep / "out"
    capsys.readouterr()
    assert main(["runs", str(out), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert len(runs) == 6 and all(r["status"] == "done" for r in runs)
    for r in runs:  # params: 64·w + w + w·10 + 10 for one block; FLOPs: 6·(64w + 10w) per example × examples
        w = r["config"]["model"]["width"]
        assert r["params"] == 75 * w + 10
        assert r["flops"] == 6 * 74 * w * 40 * 32
    assert main(["analyze", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["curves"][0]["axis"] == "model.width"
    assert [p["size"] for p in doc["curves"][0]["points"]] == [2, 8, 32]
    assert main(["report", str(out)]) == 0
    assert "model.width" in (out / "report.html").read_text()
    with Store.open(out) as store:
        source = store.meta("model_sources")[f"{user_sweep / 'tiny_net.py'}:make_net"]
    assert source["path"] == str(user_sweep / "tiny_net.py")
    assert len(source["sha256"]) == 64


def test_compress_implicit_and_landscape_rebuild_a_user_run(user_sweep, capsys):
    out = user_sweep / "out"
    with Store.open(out) as store:
        run = next(r for r in store.runs() if r["config"]["model"]["width"] == 32 and r["config"]["seed"] == 0)
    capsys.readouterr()
    assert main(["compress", str(out), "--run", run["id"], "--prune", "0.5", "--prune-structured", "0.5",
                 "--quantize", "dynamic-int8", "--finetune-steps", "5", "--repeats", "2", "--warmup", "0",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    dense = doc["models"][0]
    assert dense["method"] == "dense" and dense["test_loss"] == pytest.approx(run["metrics"]["test_loss"], rel=1e-5)
    pruned = next(m for m in doc["models"] if m["method"] == "prune" and m["variant"] == "one-shot")
    weights = 64 * 32 + 32 * 10  # both Linear weights are ranked; biases stay
    assert pruned["nonzero_params"] == dense["nonzero_params"] - weights // 2
    masked = [m for m in doc["models"] if m["method"] == "prune-structured"]
    assert {m["widths"]["1"] for m in masked} == {16}  # the hidden Linear (Sequential index 1) keeps 16 of 32
    assert any(m["method"] == "quantize" for m in doc["models"])
    assert "onnxruntime" in dense or doc["skipped"]
    assert main(["implicit", str(out), "--run", run["id"], "--json"]) == 0
    implicit = json.loads(capsys.readouterr().out)
    assert implicit["param_norm"] == pytest.approx(run["metrics"]["param_norm"], rel=1e-6)
    assert main(["landscape", str(out), "--max-runs", "all", "--json"]) == 0
    paths = {p["run_id"]: p for p in json.loads(capsys.readouterr().out)["paths"]}
    assert len(paths) == 6  # every run rebuilt through the factory: α = 1 is the trained model, as stored
    assert paths[run["id"]]["train_loss"][-1] == pytest.approx(run["metrics"]["train_loss"], rel=1e-6)


def test_a_changed_model_file_is_refused_on_resume_and_rebuild(user_sweep, capsys):
    net, out = user_sweep / "tiny_net.py", user_sweep / "out"
    original = net.read_text()
    run_id = Store.open(out).runs()[0]["id"]
    try:
        net.write_text(original.replace("nn.ReLU()", "nn.Tanh()"))
        capsys.readouterr()
        assert main(["sweep", str(user_sweep / "spec.yaml"), "--out", str(out), "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"overparam: error: {net}: the model file") and "use a new --out or revert" in line
        assert main(["implicit", str(out), "--run", run_id]) == 2
        assert "revert the file" in one_error_line(capsys)
    finally:
        net.write_text(original)
    assert main(["sweep", str(user_sweep / "spec.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert "6 already done, 0 trained now" in capsys.readouterr().err


def test_a_fused_user_group_resumes_bit_identical_from_its_snapshot(tmp_path):
    """Dropout generators, augmentation generators, moments and curves all come back from the snapshot."""
    from test_snapshots import assert_identical, group_interrupted_and_resumed, image_task

    from overparam.spec import resolve_config

    train = {"optimizer": "adam", "steps": 12, "batch_size": 16, "eval_every": 3, "dropout": 0.2}
    configs = [resolve_config({"task": {"kind": "digits"}, "model": {"family": ref("Net"), "width": 6},
                               "train": {**train, "lr": lr}, "seed": seed})
               for seed, lr in ((0, 1e-3), (1, 1e-3), (1, 3e-3))]
    want, got, snap = group_interrupted_and_resumed(train_functional_group, configs, image_task(n=32),
                                                    tmp_path / "g.safetensors", every=5)
    assert snap.resumed_from == 5
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w)
