"""A user's own model for overparam: any function or class that returns an nn.Module.

The sweep calls make_net with the spec's model keys (width, blocks) as keyword arguments and
fills in input_shape and num_outputs from the task; see docs/own-task.md.
"""

import math

from torch import nn


def make_net(input_shape: tuple, num_outputs: int, width: int = 64, blocks: int = 1) -> nn.Module:
    """An MLP: `blocks` hidden layers of `width` ReLU units, then a linear head."""
    layers, d = [nn.Flatten()], math.prod(input_shape)
    for _ in range(blocks):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, num_outputs))
    return nn.Sequential(*layers)
