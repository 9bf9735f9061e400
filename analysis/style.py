"""One look for every figure: each optimizer keeps its name and colour across all plots."""

from __future__ import annotations

import matplotlib

DISPLAY_NAMES = {
    "sgd": "SGD-m",
    "adam": "Adam",
    "kfac": "KFAC",
    "shampoo": "Shampoo",
    "tnt": "TNT",
    "kbfgs": "K-BFGS",
    "kbfgs_l": "K-BFGS(L)",
    "tengrad": "TENGraD",
}
_FIXED_ORDER = list(DISPLAY_NAMES)
_PALETTE = matplotlib.colormaps["tab10"].colors


def display_name(optimizer: str) -> str:
    return DISPLAY_NAMES.get(optimizer, optimizer)


def colour(optimizer: str) -> tuple[float, float, float]:
    """Known optimizers get fixed colours; others take the remaining ones by name."""
    if optimizer in _FIXED_ORDER:
        return _PALETTE[_FIXED_ORDER.index(optimizer)]
    spare = _PALETTE[len(_FIXED_ORDER) :]
    return spare[sum(map(ord, optimizer)) % len(spare)]


def sort_key(optimizer: str) -> tuple[int, str]:
    """Known optimizers in the papers' order, then the rest by name."""
    known = _FIXED_ORDER.index(optimizer) if optimizer in _FIXED_ORDER else len(_FIXED_ORDER)
    return known, optimizer
