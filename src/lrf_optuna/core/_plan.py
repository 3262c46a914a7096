"""Plans: which (method, rank) each layer gets, and their validation.

A plan maps a layer name (nested layers: "outer/inner") to ``(method, rank)``;
layers not named, or given ``"none"``, stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lrf_optuna.model._layer_specs import LayerSpec

__all__ = ["NONE", "Plan", "resolve_plan"]

NONE = "none"
Plan = Mapping[str, Any]


def _is_none(choice: Any) -> bool:
    if isinstance(choice, str):
        return choice == NONE
    return isinstance(choice, tuple | list) and len(choice) >= 1 and choice[0] == NONE


def _check_layer(name: str, specs: Mapping[str, LayerSpec], refused: Mapping[str, str]) -> LayerSpec:
    if name in specs:
        return specs[name]
    valid = list(specs)
    if name in refused:
        raise ValueError(
            f"Layer '{name}' cannot be factorized: {refused[name]}. Compressible layers: {valid}"
        )
    raise ValueError(f"Invalid layer name in plan: expected one of {valid}, received {name!r}")


def _check_choice(spec: LayerSpec, choice: Any, refused_methods: Mapping[str, str]) -> tuple[str, int]:
    if not (isinstance(choice, tuple | list) and len(choice) == 2):
        raise TypeError(
            f"Invalid plan entry for layer '{spec.name}': expected (method, rank) or "
            f"'{NONE}', received {choice!r}"
        )
    method, rank = choice
    if method not in spec.methods:
        why = f" ({refused_methods[method]})" if method in refused_methods else ""
        raise ValueError(
            f"Invalid `method` for layer '{spec.name}': expected one of "
            f"{[*spec.methods, NONE]}, received {method!r}{why}"
        )
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or not 1 <= rank <= spec.max_rank:
        raise ValueError(
            f"Invalid `rank` for layer '{spec.name}': expected 1..{spec.max_rank}, received {rank!r}"
        )
    return str(method), int(rank)


def resolve_plan(
    plan: Plan,
    specs: Mapping[str, LayerSpec],
    refused: Mapping[str, str],
    refused_methods: Mapping[str, Mapping[str, str]],
) -> dict[str, tuple[str, int]]:
    """Validate ``plan``; return only the factorized layers as ``{name: (method, rank)}``.

    ``refused`` gives the reason for each uncompressible layer, ``refused_methods``
    the reason for each inapplicable method of each compressible layer.
    """
    if not isinstance(plan, Mapping):
        raise TypeError(
            f"Invalid `plan`: expected a mapping of layer name to (method, rank), received {type(plan).__name__}"
        )
    resolved = {}
    for name, choice in plan.items():
        if _is_none(choice):
            continue
        spec = _check_layer(name, specs, refused)
        resolved[name] = _check_choice(spec, choice, refused_methods.get(name, {}))
    return resolved
