"""Model factories as a user writes them, for tests/test_user_model.py (by file path and as ``user_nets:...``)."""

import math

import torch
from torch import nn

from overparam.models.cnn import CNN, image_shape
from overparam.models.mlp import MLP


def mlp(input_shape, num_outputs, width: int = 16, depth: int = 1, dropout: float = 0.0):
    """The built-in ``mlp`` module, through a factory (its FLOPs and parameters are known in closed form)."""
    return MLP(math.prod(input_shape), width, depth, num_outputs, dropout)


def cnn(input_shape, num_outputs, width: int = 2):
    """The built-in ``cnn`` module, through a factory."""
    return CNN(image_shape(tuple(input_shape)), width, num_outputs)


class Net(nn.Module):
    """A class factory: two hidden layers, tanh then ReLU, dropout after each (p from train.dropout)."""

    def __init__(self, input_shape: tuple, num_outputs: int, width: int = 8, dropout: float = 0.0,
                 scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(),
                                  nn.Dropout(dropout), nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


def with_batchnorm(input_shape, num_outputs, width: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.BatchNorm1d(width), nn.ReLU(),
                         nn.Linear(width, num_outputs))


def draws_itself(input_shape, num_outputs, width: int = 8):
    """Random numbers inside forward (not nn.Dropout): vmap cannot reproduce them per member."""

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(math.prod(input_shape), num_outputs)

        def forward(self, x):
            return self.inner(x.flatten(1) + 0.01 * torch.randn_like(x.flatten(1)))

    return Noisy()


def with_kwargs(input_shape, num_outputs, **options):
    return nn.Linear(math.prod(input_shape), num_outputs, bias=bool(options.get("bias", True)))


def needs_width(input_shape, num_outputs, width):
    return nn.Linear(math.prod(input_shape), num_outputs)


def not_a_module(input_shape, num_outputs):
    return "a string"


def raises(input_shape, num_outputs, width: int = 8):
    raise ValueError(f"width {width} is not supported")


def regression_net(input_shape, num_outputs, width: int = 8):
    return nn.Sequential(nn.Linear(math.prod(input_shape), width), nn.GELU(), nn.Linear(width, num_outputs))


regression_net.size_keys = ("width",)
