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


class TinyLM(nn.Module):
    """A language-model factory: token and position embeddings, one causal self-attention head, an MLP, a
    head; dropout (train.dropout) after the attention and the MLP."""

    def __init__(self, vocab_size: int, context: int = 8, width: int = 8, dropout: float = 0.0):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.head = nn.Linear(width, vocab_size)
        self.register_buffer("causal", torch.tril(torch.ones(context, context, dtype=torch.bool)))

    def forward(self, idx):
        t = idx.shape[-1]
        h = self.tok(idx) + self.pos.weight[:t]  # (B, T, d)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, T, T)
        scores = scores.masked_fill(~self.causal[:t, :t], float("-inf"))
        h = h + self.drop1(self.proj(scores.softmax(dim=-1) @ v))
        h = h + self.drop2(self.mlp(h))
        return self.head(h)  # (B, T, V)


def counting_lm(vocab_size, context: int = 8, width: int = 8):
    """Data-dependent control flow on tensor values: vmap cannot run it."""

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.head = nn.Embedding(vocab_size, width), nn.Linear(width, vocab_size)

        def forward(self, idx):
            h = self.tok(idx)
            if h.sum() > 0:  # a Python branch on a value
                h = h * 2
            return self.head(h)

    return Counting()
