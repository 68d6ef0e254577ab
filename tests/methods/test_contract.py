"""Contract tests over every registered pre-training method, each from its own ``SPEC.smoke``
settings and ``SPEC.smoke_data``: two CPU steps give a finite loss, a gradient on every trainable
parameter and none on frozen ones; the engine exports weights that ``load_pretrained`` reads back;
a run stopped after one step and resumed ends bit-identical to an uninterrupted run; the run seed
reaches the augmentation."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

from contrast3d.engine.data import SeededDataset
from contrast3d.engine.run import train
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.common import smoke_frame_pairs
from contrast3d.models.pretrained import load_pretrained

_DATA: dict = {}

# A method being developed before it is registered: CONTRAST3D_EXTRA_METHODS=fac,msc (module names).
for _module in filter(None, os.environ.get("CONTRAST3D_EXTRA_METHODS", "").split(",")):
    METHODS.setdefault(_module, importlib.import_module(f"contrast3d.methods.{_module}").SPEC)


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    """``name -> data root`` built once per distinct smoke-data builder."""
    def get(name: str) -> str:
        build = METHODS[name].smoke_data or smoke_frame_pairs
        if build not in _DATA:
            _DATA[build] = build(tmp_path_factory.mktemp(f"smoke_{name}"))
        return _DATA[build]
    return get


def _flatten(prefix: str, value) -> list[str]:
    if isinstance(value, dict):
        return [o for k, v in value.items() for o in _flatten(f"{prefix}.{k}" if prefix else k, v)]
    return [f"{prefix}={value if not isinstance(value, (list, tuple)) else list(value)}"]


def smoke_config(name: str, root: str, steps: int, seed: int = 0):
    overrides = _flatten("", METHODS[name].smoke) + ["loader.batch_size=2", "loader.num_workers=0",
                                                     "checkpoint_every=1", "log_every=1"]
    return method_config(name, flags={"data_root": root, "steps": steps, "device": "cpu", "progress": False,
                                      "seed": seed}, overrides=overrides)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_steps_finite_loss_and_full_gradients(name, smoke_root):
    cfg = smoke_config(name, smoke_root(name), 2)
    torch.manual_seed(0)
    method, dataset, collate = METHODS[name].build(cfg)
    frozen = {id(p) for f in method.frozen_modules().values() for p in f.module.parameters()}
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    method.train()
    for step in range(2):
        batch = collate([dataset.get_sample(i, np.random.default_rng([step, i])) for i in range(2)])
        out = method(batch)
        assert torch.isfinite(out["loss"]), out
        opt.zero_grad()
        out["loss"].backward()
        named = list(method.named_parameters())
        missing = [n for n, p in named if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
        assert not missing, f"{name}: parameters without a finite gradient: {missing[:5]}"
        dead = [n for n, p in named if p.requires_grad and p.grad.abs().sum() == 0]
        assert not dead, f"{name}: parameters with an all-zero gradient: {dead[:5]}"
        leaked = [n for n, p in named if id(p) in frozen and (p.requires_grad or p.grad is not None)]
        assert not leaked, f"{name}: frozen parameters with gradients: {leaked[:5]}"
        opt.step()
    trained = {id(p) for p in method.parameters()}
    exported = list(method.backbone().parameters())
    assert exported and all(id(p) in trained for p in exported)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_export_reload_and_bit_identical_resume(name, smoke_root, tmp_path):
    root = smoke_root(name)
    full, part = tmp_path / "full", tmp_path / "part"
    train(smoke_config(name, root, 3), METHODS[name], full)
    assert train(smoke_config(name, root, 3), METHODS[name], part, until=1).backbone_path is None
    result = train(smoke_config(name, root, 3), METHODS[name], part, resume=True)
    assert result.step == 3
    for export in result.exports:
        a, b = (r / f"{export}.safetensors" for r in (full, part))
        assert a.read_bytes() == b.read_bytes(), f"{name}: {export} differs after resume"
    pre = load_pretrained(full / "backbone.safetensors")
    assert pre.record.method == name and pre.record.step == 3 and pre.record.feat_keys
    ckpt = load_pretrained(full / "checkpoints" / "last.pt")  # the checkpoint's backbone is the export
    assert all(torch.equal(v, ckpt.model.state_dict()[k]) for k, v in pre.model.state_dict().items())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_run_seed_changes_the_augmentation(name, smoke_root):
    cfg = smoke_config(name, smoke_root(name), 1)
    _, dataset, _ = METHODS[name].build(cfg)
    a, a_again = SeededDataset(dataset, 0)[(0, 0)], SeededDataset(dataset, 0)[(0, 0)]
    b = SeededDataset(dataset, 1)[(0, 0)]
    views = lambda s: getattr(s, "views", [s])  # noqa: E731
    assert all(np.array_equal(x.coord, y.coord) for x, y in zip(views(a), views(a_again)))
    assert not all(np.array_equal(x.coord, y.coord) if x.coord.shape == y.coord.shape else False
                   for x, y in zip(views(a), views(b)))
