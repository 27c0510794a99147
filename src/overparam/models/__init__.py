"""Model families: a registry of modules following ``overparam.models.base``, and the user's own.

A family name is a registered one (``FAMILIES``) or a factory reference, ``"path/to/file.py:make_net"``
or ``"package.module:make_net"`` (``overparam.models.user``): both answer ``family_module``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from overparam.models.base import Shape

FAMILIES: dict[str, str] = {
    "linear": "overparam.models.linear",
    "rff": "overparam.models.rff",
    "mlp": "overparam.models.mlp",
    "gpt": "overparam.models.gpt",
    "cnn": "overparam.models.cnn",
    "resnet18k": "overparam.models.resnet",
    "hf-causal-lm": "overparam.models.hf_causal_lm",
}


def is_user_family(name: str) -> bool:
    """True for a factory reference (the user's own model), False for a registered family."""
    from overparam.models.user import is_reference

    return name not in FAMILIES and is_reference(name)


def family_module(name: str) -> ModuleType | Any:
    """The family named ``name``: a registered module, or the user's factory wrapped as one."""
    from overparam.errors import SpecError

    if name in FAMILIES:
        return importlib.import_module(FAMILIES[name])
    if isinstance(name, str) and is_user_family(name):
        from overparam.models.user import family

        return family(name)
    raise SpecError(f"model.family: unknown family {name!r} (known: {', '.join(sorted(FAMILIES))}, or your own "
                    f"model as 'path/to/file.py:factory' or 'package.module:factory')")


__all__ = ["FAMILIES", "Shape", "family_module", "is_user_family"]
