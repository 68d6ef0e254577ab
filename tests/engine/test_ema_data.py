"""EMA helper and the seeded, resumable, rank-sharded sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from contrast3d.engine.data import LoaderConfig, ResumableBatchSampler, SeededDataset, build_loader
from contrast3d.engine.ema import EMATeacher, cosine_momentum, ema_update_


def test_ema_update_formula_and_buffers():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    teacher = EMATeacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student(torch.randn(4, 3))  # changes running stats
    teacher.update(student, 0.9)
    for name, p in student.named_parameters():
        expected = 0.9 * before[name] + 0.1 * p
        assert torch.allclose(teacher.module.state_dict()[name], expected, atol=1e-6)
    assert torch.equal(teacher.module[1].running_mean, student[1].running_mean)
    ema_update_(teacher.module, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher.module.parameters(), student.parameters()))
    with pytest.raises(ValueError):
        ema_update_(teacher.module, student, 1.5)


def test_cosine_momentum():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


def test_sampler_shards_like_distributed_sampler():
    n, bs = 11, 2
    shards = [ResumableBatchSampler(n, bs, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    idx = [s.indices(3) for s in shards]
    assert len(idx[0]) == len(idx[1]) == 6
    assert set(idx[0]) | set(idx[1]) == set(range(n))
    ref = torch.utils.data.DistributedSampler(range(n), num_replicas=2, rank=1, seed=5)
    ref.set_epoch(3)
    assert list(ref) == idx[1]
    assert [len(list(iter(s))) for s in shards] == [3, 3]
    assert shards[0].indices(3) != shards[0].indices(4)


def test_sampler_skip_resumes_exactly():
    s = ResumableBatchSampler(10, 3, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_start(2)
    assert list(s) == full[2:]
    assert list(s) == full  # the skip applies once
    with pytest.raises(ValueError, match="fewer than one batch"):
        ResumableBatchSampler(3, 4)


class Noisy:
    epoch = -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.tensor([i, self.epoch, np.random.rand(), torch.rand(()).item()])


def test_samples_do_not_depend_on_workers_or_order():
    ds = SeededDataset(Noisy(), seed=7)
    a = ds[(0, 3)]
    ds[(0, 1)]
    assert torch.equal(ds[(0, 3)], a) and not torch.equal(ds[(1, 3)], a)
    state = torch.get_rng_state()
    ds[(0, 2)]
    assert torch.equal(torch.get_rng_state(), state)  # main-process RNG untouched
    loaders = [build_loader(Noisy(), torch.stack, LoaderConfig(batch_size=2, num_workers=w), seed=7) for w in (0, 2)]
    batches = []
    for dl in loaders:
        epochs = []
        for e in range(2):
            dl.batch_sampler.set_epoch(e)
            epochs.append(torch.cat(list(dl)))
        batches.append(torch.cat(epochs))
    assert torch.equal(batches[0], batches[1])
    assert set(batches[0][:, 1].tolist()) == {0.0, 1.0}  # persistent workers saw both epochs
