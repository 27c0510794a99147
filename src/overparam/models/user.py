"""The user's own model: ``model.family: "path/to/file.py:make_net"`` or ``"package.module:make_net"``.

A *factory* is a function or class in the user's file or package that returns an ``nn.Module``
mapping a batch of inputs (B, *input_shape) to logits or predictions (B, K) (token ids (B, T)
to logits (B, T, V) for a language task). :func:`family` wraps it as a family with the contract
of ``overparam.models.base``:

- **keys** (``OPTIONS``): the factory's parameters. The other ``model`` keys of the spec are
  passed as keyword arguments; a key the signature does not take is rejected before anything
  trains, with the accepted list (a ``**kwargs`` parameter takes any key). Types come from
  annotations (``int``, ``float``, ``bool``, ``str``, ``list``, ``dict``, ``Optional[...]``,
  ``Literal[...]`` as choices), else from the default's type; a parameter without a default is
  required. Injected, never spec keys: ``input_shape`` (tuple), ``num_outputs`` (classes or
  regression targets; the vocabulary for a language task), ``vocab_size`` (language tasks) and
  ``dropout`` (``train.dropout``), each only when the signature names it (``train.dropout`` > 0
  needs a factory that takes ``dropout``).
- **size keys** (``SIZE_KEYS``, the x axis of a double-descent curve): the factory's
  ``size_keys`` attribute when it has one (``make_net.size_keys = ("width",)``), else every
  integer-valued key.
- **init**: torch's global generator is seeded with the run's init seed (``generator(seed,
  "init")``'s seed) around the call and restored after it: same seed, same init; different
  seeds, different inits, whatever the factory draws with torch's default generator.
- **parameters**: the trainable parameters of the built module (shared tensors once).
- **training FLOPs per example**: measured, once per distinct config and task shape, with
  ``torch.utils.flop_counter.FlopCounterMode`` on one example in eval mode: 3 × the forward's
  FLOPs (a matmul or conv of m multiply-adds counts 2m; elementwise ops, norms and pooling count 0),
  the same 2 + 4 per multiply-add convention as the built-in families (within 1 % of ``mlp`` and
  ``cnn``'s formulas: a test holds it). For a language task, per token: one window of
  ``model.context`` tokens, divided by the context.

Provenance: :attr:`UserFamily.source` is the file the factory lives in (the module's file for
``package.module``); ``overparam.provenance`` records its sha256 in the sweep's store.
A relative path is read from the current directory, or from where the store recorded it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overparam.errors import SpecError
from overparam.models.base import Shape, count_trainable, generator
from overparam.options import EXTRA, Option, OptionTable, json_copy, json_value

INJECTED = ("input_shape", "num_outputs", "vocab_size", "dropout")  # from the task and recipe, never spec keys
_REMEMBERED: dict[str, Path] = {}  # reference -> the absolute file a sweep's store recorded for it
_FAMILIES: dict[tuple, UserFamily] = {}  # (reference, file, mtime, size) -> family
_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_reference(name: str) -> bool:
    """True for ``something:factory`` (a file or a module, then a dotted attribute name)."""
    target, _, attr = name.rpartition(":")
    return bool(target) and bool(_ATTR.fullmatch(attr))


def is_file_reference(name: str) -> bool:
    target = name.rpartition(":")[0]
    return target.endswith(".py") or "/" in target or os.sep in target


def remember(reference: str, path: str | Path) -> None:
    """Where a sweep's store says ``reference``'s file was: read from there first (rebuilding a run
    from another directory), when it still exists."""
    _REMEMBERED[reference] = Path(path)


def source_file(reference: str) -> Path | None:
    """The file a reference reads: the ``.py`` file, or the module's file (None for a namespace package)."""
    target = reference.rpartition(":")[0]
    if is_file_reference(reference):
        return _file_path(reference, target)
    module = _import_module(reference, target)
    path = getattr(module, "__file__", None)
    return Path(path).resolve() if path else None


def _file_path(reference: str, target: str) -> Path:
    remembered = _REMEMBERED.get(reference)
    if remembered is not None and remembered.is_file():
        return remembered.resolve()
    path = Path(target).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
        raise SpecError(f"model.family: {reference!r}: no such file {str(path)!r}{where}")
    return path.resolve()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _import_module(reference: str, name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # the user's code may raise anything at import
        raise SpecError(f"model.family: {reference!r}: cannot import module {name!r} ({_one_line(exc)})") from exc


def _import_file(reference: str, path: Path) -> types.ModuleType:
    """Import a file under a name of its own (two files called model.py never collide); its folder
    goes on ``sys.path`` so that it can import its neighbours, as ``python file.py`` would."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"overparam_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"model.family: {reference!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a SyntaxError, a failing import, even sys.exit() at import time
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SpecError(f"model.family: {reference!r}: importing {path} failed ({_one_line(exc)})") from exc
    return module


def family(reference: str) -> UserFamily:
    """The family of a factory reference, imported once per version of its file."""
    target, _, attr = reference.rpartition(":")
    if is_file_reference(reference):
        path = _file_path(reference, target)
        stat = path.stat()
        key: tuple = (reference, str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _FAMILIES:
            _FAMILIES[key] = UserFamily(reference, _attribute(reference, _import_file(reference, path), attr), path)
        return _FAMILIES[key]
    key = (reference,)
    if key not in _FAMILIES:
        module = _import_module(reference, target)
        path = getattr(module, "__file__", None)
        _FAMILIES[key] = UserFamily(reference, _attribute(reference, module, attr), Path(path) if path else None)
    return _FAMILIES[key]


def _attribute(reference: str, module: types.ModuleType, attr: str) -> Callable:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            hint = f" (it defines: {', '.join(found)})" if found else ""
            where = Path(module.__file__).name if getattr(module, "__file__", None) else module.__name__
            raise SpecError(f"model.family: {reference!r}: {where} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"model.family: {reference!r}: {attr} is a {type(obj).__name__}, not a function or class")
    return obj


# -- the factory's signature as spec options -----------------------------------------------------------

_SIMPLE = {int: int, float: float, bool: bool, str: str, list: list, tuple: list, dict: dict}
_NAMED = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": list, "dict": dict}


def _annotation_type(annotation: Any) -> tuple[Any, bool, tuple | None]:
    """(type or None, nullable, choices) of an annotation; None when it says nothing usable."""
    if annotation is inspect.Parameter.empty:
        return None, False, None
    if isinstance(annotation, str):  # an annotation that could not be evaluated: read simple names
        text = annotation.replace(" ", "")
        nullable = text.startswith("Optional[") or "|None" in text or text.startswith("None|")
        text = re.sub(r"^Optional\[(.*)\]$", r"\1", text).replace("|None", "").replace("None|", "")
        base = text.split("[", 1)[0]
        return _NAMED.get(base), nullable, None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        values = tuple(args)
        kinds = {type(v) for v in values}
        return (kinds.pop() if len(kinds) == 1 else None), False, values
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            kind, _, choices = _annotation_type(rest[0])
            return kind, len(rest) < len(args), choices
        if set(rest) == {int, float}:
            return float, len(rest) < len(args), None
        return None, len(rest) < len(args), None
    if origin is not None:
        return _SIMPLE.get(origin), False, None
    return _SIMPLE.get(annotation), False, None


def _option(param: inspect.Parameter) -> Option:
    """A spec option for one factory parameter (type from its annotation, else its default)."""
    kind, nullable, choices = _annotation_type(param.annotation)
    default = None if param.default is inspect.Parameter.empty else param.default
    if kind is None and default is not None:
        kind = _SIMPLE.get(type(default))
    if isinstance(default, tuple):
        default = list(default)
    doc = "required (no default)" if param.default is inspect.Parameter.empty else "keyword of the factory"
    if kind is None:
        return Option((object,), default, doc, choices=choices, check=json_value, normalize=json_copy)
    if kind in (list, dict):
        return Option(kind, default, doc, check=json_value, nullable=nullable or default is None,
                      normalize=json_copy)
    return Option(kind, default, doc, choices=choices, nullable=nullable or default is None)


def _signature(factory: Callable, reference: str) -> inspect.Signature:
    try:
        return inspect.signature(factory, eval_str=True)
    except Exception:  # an annotation naming something the module does not define at runtime
        try:
            return inspect.signature(factory)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"model.family: {reference!r}: cannot read the factory's signature ({exc})") from exc


class UserFamily:
    """A user's factory with the family contract (module doc). Built by :func:`family`, cached."""

    LINEAR_IN_PARAMS = False

    def __init__(self, reference: str, factory: Callable, source: Path | None):
        self.reference, self.factory, self.source = reference, factory, source
        self.name = getattr(factory, "__qualname__", getattr(factory, "__name__", reference))
        params = _signature(factory, reference).parameters.values()
        self.takes = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        self.kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
        if positional_only:
            raise SpecError(f"model.family: {reference!r}: parameters {', '.join(positional_only)} are positional-"
                            f"only; the factory is called with keyword arguments")
        keys = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in INJECTED]
        self.required = tuple(p.name for p in keys if p.default is p.empty)
        if "family" in {p.name for p in keys}:
            raise SpecError(f"model.family: {reference!r}: a parameter named 'family' clashes with the spec key")
        self.OPTIONS: dict[str, Option] = OptionTable({"family": Option(str, None)},
                                                      owner=f"{self.name} in {reference!r}")
        self.OPTIONS.update({p.name: _option(p) for p in keys})
        if self.kwargs:  # **kwargs: any other key, any JSON-like value
            self.OPTIONS[EXTRA] = Option((object,), None, "passed through **kwargs", check=json_value,
                                         normalize=json_copy)
        declared = getattr(factory, "size_keys", None)
        if declared is not None:
            unknown = [k for k in declared if k not in self.OPTIONS]
            if isinstance(declared, str) or unknown:
                which = f"; not parameters: {', '.join(unknown)}" if unknown and not isinstance(declared, str) else ""
                raise SpecError(f"model.family: {reference!r}: size_keys must be a tuple of its parameter "
                                f"names{which}")
            self.SIZE_KEYS = tuple(declared)
        else:
            self.SIZE_KEYS = tuple(k for k, o in self.OPTIONS.items() if o.type is int)
        self._params: dict[str, int] = {}
        self._flops: dict[str, int] = {}

    # -- spec checks ---------------------------------------------------------------------------------
    def validate(self, cfg: dict[str, Any]) -> None:
        """Every required keyword given (the others have defaults)."""
        missing = [k for k in self.required if cfg.get(k) is None]
        if missing:
            raise SpecError(f"model.{missing[0]}: required by {self.name} in {self.reference!r} (it has no default); "
                            f"accepted keys: {', '.join(k for k in self.OPTIONS if k not in ('family', EXTRA))}")

    def check_recipe(self, train: dict[str, Any]) -> None:
        if train["dropout"] > 0 and "dropout" not in self.takes and not self.kwargs:
            raise SpecError(f"train.dropout: {self.name} in {self.reference!r} takes no 'dropout' parameter; add one "
                            f"(the sweep passes train.dropout to it) or set train.dropout: 0")

    # -- the family contract -------------------------------------------------------------------------
    def arguments(self, cfg: dict[str, Any], shape: Shape, dropout: float = 0.0) -> dict[str, Any]:
        """The keyword arguments of the factory call: the spec's model keys plus what it asks for."""
        if shape.vocab_size and not isinstance(cfg.get("context"), int):
            raise SpecError(f"model.context: a language task trains on windows of model.context tokens; {self.name} "
                            f"in {self.reference!r} needs a 'context' keyword (e.g. def {self.name.split('.')[-1]}"
                            f"(vocab_size, context=128, ...)) and the spec a value for it")
        kwargs = {k: v for k, v in cfg.items() if k != "family"}
        injected = {"input_shape": tuple(shape.input_shape), "num_outputs": shape.output_dim,
                    "vocab_size": shape.vocab_size, "dropout": dropout}
        for name, value in injected.items():
            if name in self.takes and (name != "vocab_size" or value is not None):
                kwargs[name] = value
        return kwargs

    def build(self, cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
        """Call the factory with torch's global generator seeded by the run's init seed (restored after)."""
        kwargs = self.arguments(cfg, shape, dropout)
        init_seed = generator(seed, "init").initial_seed()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            try:
                model = self.factory(**kwargs)
            except Exception as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
                raise SpecError(f"model.family: {self.reference!r}: {self.name}({shown[:200]}) raised "
                                f"{_one_line(exc)}") from exc
        if not isinstance(model, nn.Module):
            what = _article(type(model).__name__)
            raise SpecError(f"model.family: {self.reference!r}: {self.name} returned {what}, not a torch.nn.Module")
        return model

    def _key(self, cfg: dict[str, Any], shape: Shape) -> str:
        return json.dumps([cfg, list(shape.input_shape), shape.output_dim, shape.vocab_size], sort_keys=True,
                          default=str)

    def count_params(self, cfg: dict[str, Any], shape: Shape) -> int:
        """Trainable parameters of the module the factory builds (seed 0; shapes do not depend on it)."""
        key = self._key(cfg, shape)
        if key not in self._params:
            self._params[key] = count_trainable(self.build(cfg, shape, 0))
        return self._params[key]

    def flops_per_example(self, cfg: dict[str, Any], shape: Shape) -> int:
        """Training FLOPs per example (per token for a language task), measured once per config (module doc)."""
        key = self._key(cfg, shape)
        if key not in self._flops:
            self._flops[key] = measure_flops(self.build(cfg, shape, 0), example_input(cfg, shape),
                                             per=cfg.get("context") if shape.vocab_size else 1,
                                             where=self.reference)
        return self._flops[key]


def example_input(cfg: dict[str, Any], shape: Shape) -> torch.Tensor:
    """One example as the trainer feeds it: (1, *input_shape) floats, or (1, context) token ids."""
    if shape.vocab_size:
        context = cfg.get("context")
        if not isinstance(context, int) or context < 1:
            raise SpecError("model.context: a language task needs the factory to take a 'context' keyword (the "
                            "training window in tokens)")
        return torch.zeros(1, context, dtype=torch.int64)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, *shape.input_shape, generator=gen)


def measure_flops(model: nn.Module, x: torch.Tensor, per: int = 1, where: str = "the model") -> int:
    """3 × the FLOPs torch's counter sees in one forward of ``x`` (eval mode, no grad), divided by ``per``."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    except Exception as exc:
        raise SpecError(f"model.family: {where!r}: the model's forward failed on one example of shape "
                        f"{tuple(x.shape)} ({_one_line(exc)})") from exc
    return int(math.ceil(3 * counter.get_total_flops() / max(per, 1)))


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
