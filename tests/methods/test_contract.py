"""Contract test over every registered pre-training method: two steps on tiny simulated data on
CPU give a finite loss and a gradient for every trainable parameter."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from contrast3d.methods import METHODS

# Tiny-but-real settings per section; keys absent from a method's section are ignored.
TINY = {
    "model": {"preset": "spunet-tiny"},
    "data": {"grid_size": 0.1, "match_radius": 0.15, "max_points": 3000, "strict": True},
    "method": {"num_matches": 256, "num_negatives": 128},
}


def tiny(cls, section: str):
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in TINY[section].items() if k in fields})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_steps_finite_loss_and_full_gradients(name, sim_scenes):
    spec = METHODS[name]
    torch.manual_seed(0)
    data_cfg, model_cfg, method_cfg = (tiny(spec.data_config_cls, "data"), tiny(spec.model_config_cls, "model"),
                                       tiny(spec.config_cls, "method"))
    dataset = spec.build_dataset(str(sim_scenes), data_cfg)
    collate = spec.build_collate(data_cfg)
    method = spec.build_method(method_cfg, model_cfg)
    opt = torch.optim.SGD(method.parameters(), lr=0.01)
    for step in range(2):
        samples = [dataset.get_sample(i, np.random.default_rng([step, i])) if hasattr(dataset, "get_sample")
                   else dataset[i] for i in range(2)]
        out = method(collate(samples))
        assert torch.isfinite(out["loss"]), out
        opt.zero_grad()
        out["loss"].backward()
        missing = [n for n, p in method.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
        assert not missing, f"{name}: parameters without a finite gradient: {missing[:5]}"
        dead = [n for n, p in method.named_parameters() if p.requires_grad and p.grad.abs().sum() == 0]
        assert not dead, f"{name}: parameters with an all-zero gradient: {dead[:5]}"
        opt.step()
        method.on_step_end(step + 1, 2)
    # the exported backbone is part of the trained method
    trained = {id(p) for p in method.parameters()}
    exported = list(method.backbone().parameters())
    assert exported and all(id(p) in trained for p in exported)
