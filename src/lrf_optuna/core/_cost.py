"""Pure cost arithmetic: parameter and multiply-accumulate counts."""

from __future__ import annotations

import dataclasses

__all__ = ["Cost"]


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates (MACs) of one layer or one model.

    MACs are counted per sample (batch size 1). ``flops`` is ``2 * macs``, the
    convention of TensorFlow's profiler.
    """

    params: int = 0
    macs: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.params - other.params, self.macs - other.macs)

    def strictly_below(self, other: Cost) -> bool:
        """True when both params and MACs are strictly smaller than ``other``'s."""
        return self.params < other.params and self.macs < other.macs
