"""Shared comparisons for the exactness tests: one fused member vs its run alone, a sweep fused vs unfused."""

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


def assert_sweep_same_fused_and_unfused(spec: dict, out, n_runs: int, metric: str) -> None:
    """Through the executor and the store: ``--fuse on`` and ``off`` store the same runs (``metric``
    within 1e-10), the fused ones marked ``fused``, each with its checkpoint."""
    from overparam.store import Store
    from overparam.sweep.runner import run_sweep

    stored = {}
    for fuse in ("on", "off"):
        summary = run_sweep(spec, out / fuse, fuse=fuse, device="cpu", progress=False)
        assert summary.trained == n_runs and not summary.failed
        with Store.open(out / fuse) as store:
            stored[fuse] = {r["id"]: r for r in store.runs()}
    assert stored["on"].keys() == stored["off"].keys()
    for rid, row in stored["on"].items():
        assert row["status"] == stored["off"][rid]["status"] == "done"
        assert row["metrics"]["fused"] is True and "fused" not in stored["off"][rid]["metrics"]
        assert abs(row["metrics"][metric] - stored["off"][rid]["metrics"][metric]) < 1e-10
        assert (out / "on" / "checkpoints" / f"{rid}.safetensors").is_file()
