"""Model families: a registry of modules following ``overparam.models.base``."""

from __future__ import annotations

import importlib
from types import ModuleType

from overparam.models.base import Shape

FAMILIES: dict[str, str] = {
    "linear": "overparam.models.linear",
    "rff": "overparam.models.rff",
    "mlp": "overparam.models.mlp",
    "gpt": "overparam.models.gpt",
    "cnn": "overparam.models.cnn",
    "resnet18k": "overparam.models.resnet",
}


def family_module(name: str) -> ModuleType:
    from overparam.errors import SpecError

    if name not in FAMILIES:
        raise SpecError(f"model.family: unknown family {name!r} (known: {', '.join(sorted(FAMILIES))})")
    return importlib.import_module(FAMILIES[name])


__all__ = ["FAMILIES", "Shape", "family_module"]
