"""One comparison for the fused-vs-sequential exactness tests of the conv families."""

from __future__ import annotations

import math

import pytest
import torch

from overparam.train.result import TrainResult


def assert_same_run(got: TrainResult, want: TrainResult, group_size: int, steps: list[int],
                    atol: float = 1e-8) -> None:
    """A fused member (``got``) ended as its run alone (``want``): status, every state tensor (names,
    shapes, dtypes, values to ``atol``), the evaluated steps and their metrics, and ‖θ‖."""
    assert got.status == want.status == "done"
    assert got.metrics["fused"] and got.metrics["group_size"] == group_size
    assert list(got.state) == list(want.state)
    for key, value in want.state.items():
        assert got.state[key].shape == value.shape and got.state[key].dtype == value.dtype
        assert torch.allclose(got.state[key], value, rtol=0, atol=atol), key
    assert [s for s, _ in got.curve] == [s for s, _ in want.curve] == steps
    for (_, g), (_, w) in zip(got.curve, want.curve):
        assert set(g) == set(w)
        assert all(math.isclose(g[k], w[k], abs_tol=1e-9) for k in w)
    assert got.metrics["param_norm"] == pytest.approx(want.metrics["param_norm"], abs=1e-9)
