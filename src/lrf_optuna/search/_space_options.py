"""Validation of what a user restricts the search to: methods, excluded and fixed layers.

Each function takes the option as a user spells it and returns it normalized (so that two
spellings of one choice compare equal in a study's settings record), or raises a
ValueError / TypeError that names the wrong value and the valid ones, before anything
is computed or written.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from lrf_optuna.factorizers import methods_for
from lrf_optuna.model._analysis import ModelAnalysis

__all__ = [
    "LAYER_KINDS",
    "check_fixed",
    "check_min_rank_fraction",
    "lowest_rank",
    "match_exclude",
    "normalize_exclude",
    "normalize_fixed",
    "normalize_methods",
]

LAYER_KINDS = ("conv", "dense")  # the kinds of LayerSpec: separable convolutions are "conv" layers
Methods = Mapping[str, tuple[str, ...]]


def registered(kind: str) -> tuple[str, ...]:
    """The method names a layer of ``kind`` ("conv" or "dense") may use, in registry order."""
    names = methods_for(kind) + (methods_for("separable") if kind == "conv" else [])
    return tuple(dict.fromkeys(names))


def _names(value: object, what: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"Invalid `methods` {what}: expected a list of method names, received "
            f"{type(value).__name__} {value!r}. Write e.g. ['svd'], not 'svd'."
        )
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"Invalid `methods` {what}: expected method names (str), received {name!r}")
        if name not in valid:
            raise ValueError(
                f"Invalid `methods` {what}: expected names among {list(valid)}, received {name!r}. "
                "Correct the name (lrf_optuna.factorizers.methods_for(kind) lists the registered methods)."
            )
    return tuple(n for n in valid if n in names)  # registry order: spellings compare equal


def normalize_methods(methods: Iterable[str] | Mapping[str, Iterable[str]] | None) -> Methods | None:
    """``{kind: names}`` for both kinds (a flat list applies to every kind), or None: every method."""
    if methods is None:
        return None
    if isinstance(methods, Mapping):
        for kind in methods:
            if kind not in LAYER_KINDS:
                raise ValueError(
                    f"Invalid `methods` key {kind!r}: expected a layer kind among {list(LAYER_KINDS)}, "
                    f"received {kind!r}. Write e.g. {{'conv': ['cp'], 'dense': ['svd']}}."
                )
        return MappingProxyType(
            {k: _names(methods.get(k, ()), f"for {k} layers", registered(k)) for k in LAYER_KINDS}
        )
    every = tuple(dict.fromkeys(n for k in LAYER_KINDS for n in registered(k)))
    names = _names(methods, "", every)
    return MappingProxyType({k: tuple(n for n in registered(k) if n in names) for k in LAYER_KINDS})


def normalize_exclude(exclude: str | Iterable[str] | None) -> tuple[str, ...]:
    """Layer names or ``fnmatch`` patterns ("conv1", "dense*"); a single string is one pattern."""
    if exclude is None:
        return ()
    patterns = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(
                f"Invalid `exclude`: expected layer names or patterns (non-empty str), received {pattern!r}"
            )
    return tuple(dict.fromkeys(patterns))


def match_exclude(patterns: tuple[str, ...], analysis: ModelAnalysis) -> set[str]:
    """The compressible layers that ``patterns`` name; a pattern matching none is an error."""
    names, excluded = list(analysis.specs), set()
    for pattern in patterns:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(
                f"Invalid `exclude` pattern {pattern!r}: expected a name or pattern of a compressible "
                f"layer, received one that matches none of {names}. Correct it or leave it out."
            )
        excluded.update(matched)
    return excluded


def normalize_fixed(fixed: Mapping[str, tuple[str, int]] | None) -> Mapping[str, tuple[str, int]]:
    """``{layer: (method, rank)}`` with its types checked (the model checks come later)."""
    if fixed is None:
        return MappingProxyType({})
    if not isinstance(fixed, Mapping):
        raise TypeError(
            f"Invalid `fixed`: expected {{layer: (method, rank)}}, received {type(fixed).__name__}"
        )
    result = {}
    for layer, choice in fixed.items():
        if (
            not isinstance(layer, str)
            or isinstance(choice, str)
            or not isinstance(choice, Iterable)
            or len(choice := tuple(choice)) != 2
            or not isinstance(choice[0], str)
            or isinstance(choice[1], bool)
            or not isinstance(choice[1], int)
        ):
            raise TypeError(
                f"Invalid `fixed` entry {layer!r}: expected layer name -> (method, rank), e.g. "
                f"{{'conv2': ('cp', 8)}}, received {fixed[layer]!r}"
            )
        result[layer] = (choice[0], int(choice[1]))
    return MappingProxyType(dict(sorted(result.items())))


def check_fixed(
    fixed: Mapping[str, tuple[str, int]], analysis: ModelAnalysis, excluded: set[str]
) -> Mapping[str, tuple[str, int]]:
    """``fixed`` checked against the model: existing layers, their methods and useful ranks.

    (``min_rank_fraction`` restricts the searched ranks only: a fixed rank is the user's.)
    """
    for layer, (method, rank) in fixed.items():
        spec = analysis.specs.get(layer)
        if spec is None:
            raise ValueError(
                f"Invalid `fixed` layer {layer!r}: expected a compressible layer among "
                f"{list(analysis.specs)}, received {layer!r}"
            )
        if layer in excluded:
            raise ValueError(
                f"Invalid `fixed` layer {layer!r}: it is also excluded; keep it in one of `exclude`, `fixed`"
            )
        useful = {m: r for m, r in spec.useful_ranks.items() if r > 0}
        if method not in useful:
            raise ValueError(
                f"Invalid `fixed` method for layer {layer!r}: expected one of {list(useful)} (its "
                f"methods with a cheaper rank), received {method!r}. To keep it whole, exclude it."
            )
        if not 1 <= rank <= useful[method]:
            raise ValueError(
                f"Invalid `fixed` rank for layer {layer!r} ({method}): expected 1..{useful[method]} "
                f"(the ranks cheaper than the layer), received {rank}"
            )
    return fixed


def check_min_rank_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(
            f"Invalid `min_rank_fraction`: expected a number in 0..1 (0: every rank), received {fraction!r}"
        )
    return float(fraction)


def lowest_rank(fraction: float, useful_max: int) -> int:
    """The lowest rank offered: ``ceil(fraction * useful_max)``, at least 1."""
    return max(1, math.ceil(fraction * useful_max - 1e-9))  # 0.3 * 10 is 3.0000000000000004
