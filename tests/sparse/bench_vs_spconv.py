"""Timing of contrast3d.sparse against spconv 2.3.8 on 1 CPU thread (not a test; run by hand).

    PYTHONPATH=/path/to/spconv .venv/bin/python tests/sparse/bench_vs_spconv.py [N_VOXELS] [C]

Scene: voxelised surfaces (planes + spheres) so neighbour counts look like real scans.
Times forward+backward of: SubM k3 (map reused via indice_key), SparseConv k2s2, inverse.
"""
from __future__ import annotations

import sys
import time

import torch

torch.set_num_threads(1)


def surface_scene(n_target: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch):
        pts = []
        side = int((n_target / batch / 5) ** 0.5) + 2
        for axis in range(3):  # three walls / floor
            uv = torch.rand(n_target, 2, generator=g) * side
            w = torch.zeros(n_target, 1)
            p = torch.cat([uv[:, :axis], w, uv[:, axis:]], 1)
            pts.append(p)
        for _ in range(3):  # spheres
            c = torch.rand(3, generator=g) * side * 0.6 + side * 0.2
            d = torch.randn(n_target, 3, generator=g)
            pts.append(c + side * 0.15 * d / d.norm(dim=1, keepdim=True))
        v = torch.unique(torch.cat(pts).floor().long().clamp(min=0), dim=0)
        rows.append(torch.cat([torch.full((v.shape[0], 1), b), v], 1))
    idx = torch.cat(rows).int().contiguous()
    shape = ((idx[:, 1:].amax(0) + 2) // 2 * 2).tolist()
    return idx, shape


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    idx, shape = surface_scene(n)
    feats = torch.randn(idx.shape[0], c)
    print(f"voxels {idx.shape[0]}, spatial {shape}, C {c}")
    import contrast3d.sparse as ours
    libs = {"contrast3d": ours}
    try:
        import spconv.pytorch as spconv
        import spconv.pytorch.ops as spconv_ops
        if not torch.cuda.is_available():  # spconv's CPU backward asks for a CUDA stream
            spconv_ops.get_current_stream = lambda: 0
        libs["spconv"] = spconv
    except ImportError:
        print("spconv not importable: only our timings")
    cases: dict[str, dict[str, object]] = {}
    for name, lib in libs.items():
        torch.manual_seed(0)
        subm = lib.SubMConv3d(c, c, 3, bias=False, indice_key="s1")
        down = lib.SparseConv3d(c, 2 * c, 2, 2, bias=False, indice_key="d1")
        inv = lib.SparseInverseConv3d(2 * c, c, 2, indice_key="d1", bias=False)
        x_cached = subm(lib.SparseConvTensor(feats, idx, shape, 2))  # map cached under "s1"

        def run_subm(lib=lib, subm=subm, x=x_cached):
            f = feats.clone().requires_grad_(True)
            subm(x.replace_feature(f)).features.sum().backward()

        def run_subm_build(lib=lib, subm=subm):
            f = feats.clone().requires_grad_(True)
            subm(lib.SparseConvTensor(f, idx, shape, 2)).features.sum().backward()

        def run_down_up(lib=lib, down=down, inv=inv):
            f = feats.clone().requires_grad_(True)
            inv(down(lib.SparseConvTensor(f, idx, shape, 2))).features.sum().backward()

        cases[name] = {"subm_k3 cached map": run_subm, "subm_k3 incl. map": run_subm_build,
                       "k2s2 + inverse incl. map": run_down_up}
    # Interleave the libraries and keep the best of several runs (the machine may be shared).
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    best = {name: {key: float("inf") for key in cases[name]} for name in cases}
    for key in cases["contrast3d"]:
        for name in cases:
            cases[name][key]()  # warm-up
        for _ in range(reps):
            for name in cases:
                t0 = time.perf_counter()
                cases[name][key]()
                best[name][key] = min(best[name][key], (time.perf_counter() - t0) * 1e3)
    for key in cases["contrast3d"]:
        line = "  ".join(f"{lib}: {res[key]:8.1f} ms" for lib, res in best.items())
        ratio = f"  ratio {best['contrast3d'][key] / best['spconv'][key]:.2f}x" if "spconv" in best else ""
        print(f"{key:26s} {line}{ratio}  (fwd+bwd, best of {reps})")


if __name__ == "__main__":
    main()
