"""Argsorts of float32 edge weights for graph segmentation, compiled with numba.

ScanNet's segmentator sorts edges with ``std::sort``, which is not stable: how tied weights
end up ordered depends on the C++ library. :func:`_gcc_argsort_f32` reproduces the order that
GCC's libstdc++ introsort gives (median-of-three quicksort, heap-sort fallback, final insertion
sort), so segment ids equal ScanNet's own output; :func:`_stable_argsort_f32` keeps ties in edge
order (ScanNet rebuilt with ``std::stable_sort``).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _order_keys(w: np.ndarray) -> np.ndarray:
    """(E,) uint32 keys whose unsigned order is the float order of ``w`` (-0.0 == +0.0, NaN last)."""
    bits = w.view(np.uint32)
    keys = np.empty(w.shape[0], dtype=np.uint32)
    for i in range(w.shape[0]):
        x = bits[i]
        if x == np.uint32(0x80000000):  # -0.0 compares equal to +0.0
            x = np.uint32(0)
        keys[i] = ~x if (x >> np.uint32(31)) else (x | np.uint32(0x80000000))
    return keys


@numba.njit(cache=True)
def _stable_argsort_f32(w: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of float32 values (LSD radix sort, 3 passes of 11 bits).
    Returns (E,) int64."""
    n = w.shape[0]
    keys = _order_keys(w)
    order = np.arange(n)
    tmp = np.empty(n, dtype=np.int64)
    ktmp = np.empty(n, dtype=np.uint32)
    for shift in (0, 11, 22):
        count = np.zeros(2049, dtype=np.int64)
        for i in range(n):
            count[((keys[i] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for d in range(2048):
            count[d + 1] += count[d]
        for i in range(n):
            d = (keys[i] >> np.uint32(shift)) & np.uint32(2047)
            pos = count[d]
            tmp[pos] = order[i]
            ktmp[pos] = keys[i]
            count[d] = pos + 1
        order, tmp = tmp, order
        keys, ktmp = ktmp, keys
    return order


# GCC libstdc++ std::sort emulation on packed elements: high 32 bits = order key (the only part
# compared, like ``edge::operator<`` on ``w``), low 32 bits = the edge index that travels along.
_INSERTION_THRESHOLD = 16  # libstdc++ _S_threshold
_HI = np.uint64(32)


@numba.njit(cache=True)
def _lt(x: np.uint64, y: np.uint64) -> np.bool_:
    return (x >> _HI) < (y >> _HI)


@numba.njit(cache=True)
def _gcc_adjust_heap(e, lo, hole, length, value):
    """libstdc++ ``__adjust_heap``: sift the hole down to a leaf, then push ``value`` up."""
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if _lt(e[lo + child], e[lo + child - 1]):
            child -= 1
        e[lo + hole] = e[lo + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        e[lo + hole] = e[lo + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and _lt(e[lo + parent], value):
        e[lo + hole] = e[lo + parent]
        hole = parent
        parent = (hole - 1) // 2
    e[lo + hole] = value


@numba.njit(cache=True)
def _gcc_heap_sort(e, lo, hi):
    """libstdc++ ``make_heap`` + ``sort_heap`` of ``e[lo:hi]`` (introsort's depth-limit fallback)."""
    length = hi - lo
    if length < 2:
        return
    parent = (length - 2) // 2
    while True:
        _gcc_adjust_heap(e, lo, parent, length, e[lo + parent])
        if parent == 0:
            break
        parent -= 1
    while hi - lo > 1:
        hi -= 1
        value = e[hi]
        e[hi] = e[lo]
        _gcc_adjust_heap(e, lo, 0, hi - lo, value)


@numba.njit(cache=True)
def _gcc_sort_packed(e: np.ndarray) -> None:
    """In-place introsort of packed elements in exactly libstdc++'s ``std::sort`` move order:
    median-of-three pivot (first+1, middle, last-1) moved to the front, unguarded Hoare partition,
    heap sort past depth 2*floor(log2 n), final insertion sort (guarded on the first 16)."""
    n = e.shape[0]
    if n < 2:
        return
    depth0 = 0
    while (1 << (depth0 + 1)) <= n:
        depth0 += 1
    stack = np.empty((2 * depth0 + 2, 3), dtype=np.int64)  # depths strictly decrease up the stack
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 2 * depth0
    top = 1
    while top > 0:
        top -= 1
        lo, hi, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        while hi - lo > _INSERTION_THRESHOLD:
            if depth == 0:
                _gcc_heap_sort(e, lo, hi)
                break
            depth -= 1
            a, b, c = lo + 1, lo + (hi - lo) // 2, hi - 1
            if _lt(e[a], e[b]):
                m = b if _lt(e[b], e[c]) else (c if _lt(e[a], e[c]) else a)
            else:
                m = a if _lt(e[a], e[c]) else (c if _lt(e[b], e[c]) else b)
            e[lo], e[m] = e[m], e[lo]
            first, last, pivot = lo + 1, hi, e[lo]
            while True:
                while _lt(e[first], pivot):
                    first += 1
                last -= 1
                while _lt(pivot, e[last]):
                    last -= 1
                if not first < last:
                    break
                e[first], e[last] = e[last], e[first]
                first += 1
            stack[top, 0], stack[top, 1], stack[top, 2] = first, hi, depth  # disjoint: any order
            top += 1
            hi = first
    for i in range(1, n):
        value = e[i]
        if i < _INSERTION_THRESHOLD and _lt(value, e[0]):
            for j in range(i, 0, -1):
                e[j] = e[j - 1]
            e[0] = value
        else:
            j = i
            while j > 0 and _lt(value, e[j - 1]):
                e[j] = e[j - 1]
                j -= 1
            e[j] = value


@numba.njit(cache=True)
def _gcc_argsort_f32(w: np.ndarray) -> np.ndarray:
    """Argsort (E,) int64 leaving ties exactly where GCC's libstdc++ ``std::sort`` leaves them
    (what ScanNet's segmentator gets on Linux); E < 2**32."""
    keys = _order_keys(w)
    e = np.empty(w.shape[0], dtype=np.uint64)
    for i in range(w.shape[0]):
        e[i] = (np.uint64(keys[i]) << _HI) | np.uint64(i)
    _gcc_sort_packed(e)
    out = np.empty(w.shape[0], dtype=np.int64)
    for i in range(w.shape[0]):
        out[i] = np.int64(e[i] & np.uint64(0xFFFFFFFF))
    return out
