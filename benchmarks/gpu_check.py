"""GPU check: the CUDA code paths that CPU CI cannot exercise, in one short script.

With CUDA present it runs, on one GPU:

1. SpUNet forward/backward on CUDA with **duplicate voxels** in the input (the merge path builds
   its index tensors on the input's device) — gradients finite, outputs per point;
2. one **AMP** pre-training step through the engine's Trainer (autocast + GradScaler) of
   PointContrast on a synthetic pair batch, and that the scheduler stepped only if the step ran;
3. **torch vs spconv backend** equality on the same weights and input (when spconv imports):
   largest absolute and relative output difference in float32.

Without CUDA it prints that it skipped (exit 0). The last line is one JSON object.

Usage: ``python benchmarks/gpu_check.py`` (about a minute on one GPU).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrast3d.models import create_spunet  # noqa: E402
from contrast3d.sparse.backend import spconv_available  # noqa: E402
from contrast3d.structures import PointBatch  # noqa: E402


def _room_batch(n: int, scenes: int, device: torch.device, duplicates: float = 0.1, channels: int = 6,
                seed: int = 0) -> PointBatch:
    """``scenes`` random surface-like voxel sets of ``n`` points each, ``duplicates`` of them repeated."""
    rng = np.random.default_rng(seed)
    coords, counts = [], []
    for _ in range(scenes):
        g = rng.integers(0, 120, (n, 3))
        g[:, 2] = np.where(rng.random(n) < 0.4, 0, g[:, 2])  # a floor
        dup = g[rng.integers(0, n, int(duplicates * n))]
        coords.append(np.concatenate([g, dup]))
        counts.append(len(coords[-1]))
    grid = torch.from_numpy(np.concatenate(coords)).long()
    feat = torch.from_numpy(rng.standard_normal((len(grid), channels)).astype(np.float32))
    return PointBatch(coord=grid.float() * 0.02, feat=feat, grid_coord=grid,
                      offset=torch.from_numpy(np.cumsum(counts))).to(device)


def check_duplicates(device: torch.device) -> dict[str, Any]:
    net = create_spunet("spunet14", 6, 20, backend="torch").to(device)
    batch = _room_batch(40000, 2, device)
    t0 = time.perf_counter()
    out = net(batch)
    out.float().pow(2).mean().backward()
    torch.cuda.synchronize()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return {"points": len(batch), "out_shape": list(out.shape), "finite_out": bool(torch.isfinite(out).all()),
            "finite_grads": all(bool(torch.isfinite(g).all()) for g in grads), "seconds": time.perf_counter() - t0}


def check_amp_step(device: torch.device, tmp: Path) -> dict[str, Any]:
    from contrast3d.engine.trainer import Trainer
    from contrast3d.methods import METHODS, method_config
    from contrast3d.structures import collate_views, view_pair

    cfg = method_config("pointcontrast", flags={"data_root": "unused", "steps": 2, "device": "cuda",
                                                 "progress": False},
                        overrides=["model.preset=spunet14", "loader.num_workers=0", "loader.batch_size=1", "amp=true"])
    method = METHODS["pointcontrast"].build_method(cfg.method, cfg.model, cfg.data)

    class OnePair:
        def __len__(self) -> int:
            return 4

        def get_sample(self, index: int, rng: np.random.Generator):
            from contrast3d.structures import PointCloud

            g = rng.integers(0, 100, (20000, 3))
            cloud = PointCloud(coord=(g * 0.025).astype(np.float32), color=rng.random((20000, 3)).astype(np.float32),
                               normal=rng.standard_normal((20000, 3)).astype(np.float32), grid_coord=g)
            idx = np.arange(20000)
            return view_pair(cloud, cloud.copy(), np.stack([idx, idx], 1))

    trainer = Trainer(cfg, method, OnePair(), lambda s: collate_views(s, ("color", "normal")), tmp / "amp")
    assert trainer.use_amp, "AMP is not active on CUDA"
    batch = collate_views([OnePair().get_sample(0, np.random.default_rng(0))], ("color", "normal"))
    before = trainer.scheduler.last_epoch
    scalars = trainer._train_step(batch)
    return {"loss": scalars["loss"], "amp_skipped": scalars.get("amp_skipped"),
            "scheduler_stepped": trainer.scheduler.last_epoch > before,
            "scheduler_consistent": (trainer.scheduler.last_epoch > before) == (scalars.get("amp_skipped") == 0.0)}


def check_backends(device: torch.device) -> dict[str, Any]:
    if not spconv_available():
        return {"skipped": "spconv not importable"}
    torch.manual_seed(0)
    ref = create_spunet("spunet14", 6, 20, backend="torch").to(device).eval()
    other = create_spunet("spunet14", 6, 20, backend="spconv").to(device).eval()
    other.load_state_dict(ref.state_dict())
    batch = _room_batch(40000, 2, device, duplicates=0.0)
    with torch.no_grad():
        a, b = ref(batch), other(batch)
    diff = (a - b).abs().max().item()
    return {"max_abs_diff": diff, "max_rel_diff": diff / max(a.abs().max().item(), 1e-12),
            "equal_within_1e-3_rel": diff / max(a.abs().max().item(), 1e-12) < 1e-3}


def main() -> dict[str, Any]:
    if not torch.cuda.is_available():
        result = {"skipped": "no CUDA device: nothing to check on this machine", "torch": torch.__version__}
        print("gpu_check: skipped (no CUDA)")
        return result
    import tempfile

    device = torch.device("cuda")
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("duplicates", lambda: check_duplicates(device)),
                         ("amp_step", lambda: check_amp_step(device, Path(tmp))),
                         ("backends", lambda: check_backends(device))):
            try:
                result[name] = fn()
            except Exception as err:  # noqa: BLE001 - report every failing check, keep going
                result[name] = {"error": f"{type(err).__name__}: {err}"}
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
