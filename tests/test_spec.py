"""The spec contract: validation names the key's path; axes expand; ids name non-default settings."""

import pytest

from overparam.errors import SpecError
from overparam.spec import Spec, parse_spec_text, run_id

BASE = {"task": {"kind": "digits", "train_size": 200}, "model": {"family": "mlp", "width": 8},
        "train": {"steps": 10}}


def spec(**over):
    data = {k: dict(v) for k, v in BASE.items()}
    for key, value in over.items():
        data[key] = value
    return Spec(data)


@pytest.mark.parametrize("data, fragment", [
    ({**BASE, "model": {"family": "mlp", "widht": 8}}, "model.widht: unknown key"),
    ({**BASE, "task": {"kind": "digits", "train_size": "many"}}, "task.train_size: expected integer"),
    ({**BASE, "model": {"family": "mlp", "width": 0}}, "model.width: must be > 0"),
    ({**BASE, "model": {"family": "mlp", "width": -3}}, "model.width: must be > 0"),
    ({**BASE, "task": {"kind": "digits", "label_noise": 1.0}}, "task.label_noise: must be in [0, 1)"),
    ({**BASE, "task": {"kind": "digits", "label_noise": -0.1}}, "task.label_noise: must be in [0, 1)"),
    ({**BASE, "vary": {"model.width": []}}, "vary.model.width: the axis is empty"),
    ({**BASE, "vary": {"model.height": [1, 2]}}, "vary.model.height: unknown key"),
    ({**BASE, "vary": {"model.width": [4, -1]}}, "vary.model.width[1]: must be > 0"),
    ({**BASE, "task": {"kind": "imagenet"}}, "task.kind: unknown task"),
    ({**BASE, "model": {"family": "resnet"}}, "model.family: unknown family"),
    ({**BASE, "train": {"optimizer": "lion"}}, "train.optimizer: must be one of"),
    ({**BASE, "train": {"optimizer": "min_norm"}}, "train.optimizer: min_norm is closed form"),
    ({**BASE, "bogus": 1}, "bogus: unknown top-level key"),
    ({"model": {"family": "mlp"}}, "task.kind: missing"),
    ({**BASE, "train": {"lr": float("nan")}}, "train.lr: must be a finite number"),
    ({**BASE, "train": {"checkpoint": "yes"}}, "train.checkpoint: expected true/false"),
    ({**BASE, "vary": {"model.width": {"geometric": [0, 10], "count": 3}}}, "bounds must be > 0"),
    ({**BASE, "vary": {"model.width": {"geometric": [1, 10]}}}, "vary.model.width.count"),
    ({**BASE, "vary": [1, 2]}, "vary: expected a mapping"),
])
def test_bad_specs_name_the_key(data, fragment):
    with pytest.raises(SpecError) as err:
        Spec(data)
    assert fragment in str(err.value)


def test_malformed_yaml_names_the_line():
    with pytest.raises(SpecError, match="malformed YAML at line 2"):
        parse_spec_text("task: {kind: digits\nmodel: [", "s.yaml")


def test_geometric_axis_is_integer_sorted_and_includes_points():
    s = spec(vary={"model.width": {"geometric": [25, 10000], "count": 27, "include": [500]}})
    widths = s.axes["model.width"]
    assert widths[0] == 25 and widths[-1] == 10000 and 500 in widths
    assert widths == sorted(widths) and all(isinstance(w, int) for w in widths)
    assert len(widths) == 27  # 500 = 25·400^(13/26) is already the geometric midpoint: no duplicate
    more = spec(vary={"model.width": {"geometric": [25, 10000], "count": 27, "include": [499]}})
    assert len(more.axes["model.width"]) == 28


def test_product_of_axes_and_resolved_defaults():
    s = spec(vary={"model.width": [4, 8], "seed": [0, 1, 2]})
    runs = s.runs()
    assert len(runs) == 6
    assert {(r.config["model"]["width"], r.config["seed"]) for r in runs} == {(w, k) for w in (4, 8) for k in (0, 1, 2)}
    assert runs[0].config["train"]["optimizer"] == "adam"  # defaults are filled in
    assert s.size_axes() == ["model.width"]


def test_run_id_names_only_non_default_settings():
    a = spec().runs()[0]
    explicit_default = spec(train={"steps": 10, "optimizer": "adam", "lr": 1e-3}).runs()[0]
    assert a.id == explicit_default.id  # writing a default explicitly does not rename the run
    other = spec(train={"steps": 11}).runs()[0]
    assert other.id != a.id
    assert run_id(a.config) == a.id and len(a.id) == 12


def test_ints_accepted_as_floats_and_integral_floats_as_ints():
    s = spec(train={"steps": 10.0, "lr": 1})
    assert s.base["train"]["steps"] == 10 and s.base["train"]["lr"] == 1.0
