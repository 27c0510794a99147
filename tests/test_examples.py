"""Every shipped example spec validates (a spec that fails at run time is a broken promise)."""

from pathlib import Path

import pytest

from overparam.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_validates(path):
    spec = load_spec(path)
    assert spec.runs(), path
