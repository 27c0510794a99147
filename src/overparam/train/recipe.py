"""The training recipe's options (``train.*`` in a spec). No torch here: specs validate fast."""

from __future__ import annotations

from overparam.options import Option, at_most, fraction_below_one, nonnegative, positive

CLOSED_FORM = ("min_norm", "ridge")
# implicit-regularization measurements a run can record (``overparam.train.diagnostics``)
DIAGNOSTICS = ("norms", "sharpness", "trace")


def known_diagnostics(names: list) -> str | None:
    """Every entry a known diagnostic, none twice."""
    for name in names:
        if name not in DIAGNOSTICS:
            return f"unknown diagnostic {name!r} (known: {', '.join(DIAGNOSTICS)})"
    repeated = sorted({n for n in names if names.count(n) > 1})
    return f"{repeated[0]!r} is listed twice" if repeated else None


OPTIONS: dict[str, Option] = {
    "optimizer": Option(str, "adam", "sgd, adam, adamw, gd (full batch), or closed form: min_norm, "
                        "ridge (models linear in their parameters)",
                        choices=("sgd", "adam", "adamw", "gd", *CLOSED_FORM)),
    "lr": Option(float, 1e-3, "peak learning rate", check=at_most(1e6)),
    "momentum": Option(float, 0.0, "SGD momentum", check=fraction_below_one),
    "schedule": Option(str, "constant", "learning-rate schedule after warmup",
                       choices=("constant", "cosine", "linear")),
    "warmup_steps": Option(int, 0, "linear warmup from 0 over this many steps", check=nonnegative),
    "steps": Option(int, 1000, "optimizer steps", check=at_most(100_000_000)),
    "batch_size": Option(int, 128, "examples per step (gd: ignored, full batch)", check=at_most(10_000_000)),
    "weight_decay": Option(float, 0.0, "L2 (sgd, adam) or decoupled (adamw) weight decay", check=nonnegative),
    "dropout": Option(float, 0.0, "dropout after hidden activations", check=fraction_below_one),
    "clip": Option(float, None, "max global gradient norm (null: no clipping)", check=positive, nullable=True),
    "eval_every": Option(int, 0, "evaluate every this many steps (0: at the end only)", check=nonnegative),
    "eval_log_points": Option(int, 0, "also evaluate at this many log-spaced steps (epoch-wise curves)",
                              check=nonnegative),
    "loss": Option(str, "auto", "auto: cross_entropy for classification, mse otherwise; closed form is mse",
                   choices=("auto", "cross_entropy", "mse")),
    "ridge": Option(float, 0.0, "λ of ridge, objective (1/n)‖Φw − y‖² + λ‖w‖²", check=nonnegative),
    "solver": Option(str, "svd", "closed-form solver: svd (records singular values), lstsq, pinv",
                     choices=("svd", "lstsq", "pinv")),
    "rcond": Option(float, None, "singular values below rcond·s_max are dropped (null: "
                    "machine epsilon × max(n, N), numpy's default; a large value hides the peak)",
                    check=nonnegative, nullable=True),
    "dtype": Option(str, None, "float32 or float64 (null: float64 for closed form, float32 otherwise)",
                    choices=("float32", "float64"), nullable=True),
    "autocast": Option(str, "off", "bf16: training steps' matmuls, convolutions and attention in bfloat16 "
                       "(torch.autocast, CPU and CUDA; parameters, optimizer and evaluations stay in train.dtype, "
                       "which must be float32)", choices=("off", "bf16")),
    "checkpoint": Option(bool, True, "save final weights as safetensors"),
    "diagnostics": Option(list, [], "implicit-regularization measurements recorded per run: norms (‖θ‖, "
                          "‖θ − θ₀‖, distance to the min-norm solution), sharpness (top Hessian eigenvalue at "
                          "each evaluation and at the end, with 2/lr), trace (Hutchinson)",
                          check=known_diagnostics, normalize=sorted),
}
