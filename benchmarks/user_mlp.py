"""The ``mlp`` family's network as a user factory: the generic (torch.func) engine's benchmark subject.

``model.family: "benchmarks/user_mlp.py:make_mlp"`` builds the very module ``mlp`` builds (same layers,
same forward), so ``sweep_speed.py`` times the two fused engines on the same arithmetic.
"""

import math

from overparam.models.mlp import MLP


def make_mlp(input_shape: tuple, num_outputs: int, width: int = 64, depth: int = 1, dropout: float = 0.0) -> MLP:
    return MLP(math.prod(input_shape), width, depth, num_outputs, dropout)
