"""Deterministic, resumable data loading.

* :class:`ResumableBatchSampler` — a permutation per epoch drawn from ``(seed, epoch)``, sharded
  across ranks like :class:`~torch.utils.data.DistributedSampler`, cut into batches, and able to
  skip the first ``K`` batches of an epoch, so a resumed run sees exactly the batches an
  uninterrupted run would have seen.
* :class:`SeededDataset` — augmentation randomness is a function of ``(seed, epoch, index)``,
  never of which worker happened to load a sample or of what was loaded before. For every sample
  it reseeds Python's ``random``, numpy's global RNG and torch's RNG, then calls
  ``dataset.get_sample(index, rng)`` with a fresh :class:`numpy.random.Generator` if the dataset
  has that method, else ``dataset[index]`` (after ``dataset.set_epoch(epoch)`` if it has one;
  this runs inside the worker, so persistent workers see the right epoch).
* :func:`build_loader` — a :class:`~torch.utils.data.DataLoader` over both, with seeded workers.

Bad samples: a :class:`~contrast3d.errors.DataError` raised while loading a sample (a garbled frame
file found only when it is read) never crosses the worker boundary as an exception -- torch would
re-raise it as a ``RuntimeError`` holding the worker's traceback. :class:`SeededDataset` returns a
:class:`SampleError` in its place and :class:`SafeCollate` collates the good samples of the batch
into a :class:`FailedSamples`; the trainer then skips and lists the bad files (default) or stops
with the DataError on one line (``data.strict``).
"""
from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from contrast3d.errors import DataError
from contrast3d.threads import limit_blas


@dataclass
class LoaderConfig:
    """Batching and worker settings.

    Attributes:
        batch_size: samples per step **per process** (global batch = ``batch_size * world_size``).
        num_workers: DataLoader worker processes (0 = load in the main process).
        shuffle: a new permutation every epoch (else dataset order).
        drop_last: drop an epoch's incomplete last batch (keeps every step the same size).
        pin_memory: pinned host memory (only used on CUDA).
        prefetch_factor: batches loaded ahead per worker.
    """

    batch_size: int = 4
    num_workers: int = 2
    shuffle: bool = True
    drop_last: bool = True
    pin_memory: bool = True
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"loader.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"loader.num_workers must be >= 0, got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"loader.prefetch_factor must be >= 1, got {self.prefetch_factor}")


@dataclass
class SampleError:
    """A sample whose loading raised :class:`DataError`: dataset ``index``, the file and the reason."""

    index: int
    source: str
    reason: str


@dataclass
class FailedSamples:
    """What :class:`SafeCollate` returns for a batch with bad samples: their errors and the other
    samples collated (``None`` when none was readable)."""

    errors: list[SampleError] = field(default_factory=list)
    batch: Any = None


class SafeCollate:
    """``collate`` for batches without :class:`SampleError` s; a :class:`FailedSamples` otherwise.

    A :class:`DataError` raised by ``collate`` itself (e.g. a sample that fails validation) also
    becomes a :class:`FailedSamples` of the whole batch. Picklable when ``collate`` is.
    """

    def __init__(self, collate: Callable[[list], Any]):
        self.collate = collate

    def __call__(self, samples: list) -> Any:
        errors = [s for s in samples if isinstance(s, SampleError)]
        good = [s for s in samples if not isinstance(s, SampleError)]
        try:
            batch = self.collate(good) if good else None
        except DataError as err:
            return FailedSamples(errors + [SampleError(-1, err.source, err.reason)], None)
        return FailedSamples(errors, batch) if errors else batch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample of one epoch (independent of rank and worker)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` keys for :class:`SeededDataset`.

    The epoch's order is ``torch.randperm(n)`` from a generator seeded with ``seed + epoch``
    (padded by wrapping so every rank gets the same count), rank ``r`` takes ``order[r::world]``.
    Call :meth:`set_epoch` before iterating; :meth:`set_start` skips that many batches once.
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, drop_last: bool = True):
        if num_samples < 1:
            raise DataError("dataset", "is empty: no training samples")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.per_rank = -(-num_samples // world_size)
        if drop_last and self.per_rank < batch_size:
            raise DataError("loader.batch_size", f"the dataset has {num_samples} samples, fewer than one batch per "
                                                 f"process (batch_size {batch_size} x {world_size} processes); lower "
                                                 f"loader.batch_size")
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, batches: int) -> None:
        """Skip the first ``batches`` batches of the next iteration (resume mid-epoch)."""
        self.start = batches

    def __len__(self) -> int:
        """Batches per epoch per rank."""
        if self.drop_last:
            return self.per_rank // self.batch_size
        return -(-self.per_rank // self.batch_size)

    def indices(self, epoch: int) -> list[int]:
        """This rank's sample indices for ``epoch``, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank * self.world_size
        order = (order * (-(-total // len(order))))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        idx = self.indices(self.epoch)
        start, self.start = self.start, 0
        for b in range(start, len(self)):
            yield [(self.epoch, i) for i in idx[b * self.batch_size:(b + 1) * self.batch_size]]


class SeededDataset(Dataset):
    """Wraps a map-style dataset so every ``(epoch, index)`` sample is reproducible (see module docs)."""

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        """The sample, or a :class:`SampleError` when loading it raised :class:`DataError`."""
        try:
            return self._seeded(key)
        except DataError as err:
            return SampleError(int(key[1]), err.source, err.reason)

    def _seeded(self, key: tuple[int, int]) -> Any:
        if torch.utils.data.get_worker_info() is not None:
            return self._load(*key)
        # In the main process (num_workers=0): leave the training RNG streams untouched.
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return self._load(*key)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

    def _load(self, epoch: int, index: int) -> Any:
        s = sample_seed(self.seed, epoch, index)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        rng = np.random.default_rng(s)
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):  # datasets that derive their own generator from (seed, epoch, index)
            set_epoch(epoch)
        get = getattr(self.dataset, "get_sample", None)
        return get(index, rng) if callable(get) else self.dataset[index]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed; one BLAS thread, as torch
    gives the worker one thread of its own (:mod:`contrast3d.threads`: BLAS pools competing with the other
    workers made the augmentations' small matrix products ~25x slower)."""
    limit_blas(1)
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def usable_workers(requested: int, warn: bool = True) -> int:
    """``requested`` loader workers, at most the CPUs this process may use (a warning when capped).

    More worker processes than CPUs only add contention (torch warns about it too); samples are seeded
    by ``(seed, epoch, index)``, so the cap does not change what is loaded.
    """
    cpus = available_cpus()
    if requested > cpus and not warn:
        return cpus
    if requested > cpus:
        warnings.warn(f"loader.num_workers={requested} but only {cpus} CPU(s) available: using {cpus} workers",
                      stacklevel=3)
        return cpus
    return requested


def build_loader(dataset: Any, collate: Callable[[list], Any], cfg: LoaderConfig, *, seed: int,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of :class:`SeededDataset` batches driven by a :class:`ResumableBatchSampler`.

    Use ``loader.batch_sampler.set_epoch(e)`` / ``set_start(k)`` before ``iter(loader)``. Batches with
    unreadable samples come out as :class:`FailedSamples` (see the module docstring).
    Workers are persistent (no re-spawn per epoch) and seeded from a generator of ``(seed, rank)``,
    so the main process's RNG is not consumed by creating iterators.
    """
    sampler = ResumableBatchSampler(len(dataset), cfg.batch_size, seed=seed, rank=rank,
                                    world_size=world_size, shuffle=cfg.shuffle, drop_last=cfg.drop_last)
    workers = usable_workers(cfg.num_workers)
    return DataLoader(SeededDataset(dataset, seed), batch_sampler=sampler, collate_fn=SafeCollate(collate),
                      num_workers=workers, pin_memory=pin_memory and cfg.pin_memory,
                      worker_init_fn=seed_worker if workers else None,
                      generator=torch.Generator().manual_seed(seed * 1000 + rank),
                      persistent_workers=workers > 0,
                      prefetch_factor=cfg.prefetch_factor if workers else None)
