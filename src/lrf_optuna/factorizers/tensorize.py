"""Automatic factorization of a dimension into balanced modes (for TT and Tucker)."""

from __future__ import annotations

import functools
import heapq


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


@functools.cache
def balanced_modes(n: int, count: int) -> tuple[int, ...]:
    """``count`` integers whose product is ``n``, as equal as the primes allow.

    Largest primes first into the currently smallest mode (greedy multiway split);
    missing modes are 1. Sorted descending so the biggest mode comes first.
    """
    heap = [(1, i) for i in range(count)]
    for prime in sorted(_prime_factors(n), reverse=True):
        size, index = heapq.heappop(heap)
        heapq.heappush(heap, (size * prime, index))
    return tuple(sorted((size for size, _ in heap), reverse=True))
