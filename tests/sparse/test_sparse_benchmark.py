"""``benchmarks/sparse_conv.py``'s device job (the CUDA comparison when a GPU is present) runs on CPU too.

On a CPU-only machine the job is exercised on ``cpu``: it must time the torch backend, and leave out an spconv
twin whose build has no kernels there (spconv's CPU build has no backward) with the reason, not fail.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sparse_conv_bench", ROOT / "benchmarks" / "sparse_conv.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("with_spconv", [False, True])
def test_device_job_on_cpu(bench, with_spconv):
    res = bench.worker({"kind": "device", "model": "spunet-tiny", "scenes": 2, "voxels": 800, "repeats": 2,
                        "threads": 1, "old": "gather+torch", "new": "auto", "spconv": with_spconv,
                        "device": "cpu"})
    assert res["device"] == "cpu" and res["path"] == "auto"
    assert res["torch"]["infer_ms"] > 0 and res["torch"]["fwd_bwd_ms"] > 0
    if "spconv" in res:  # an spconv build with CPU backward kernels
        assert res["ratio_torch_over_spconv"]["infer_ms"] > 0
        assert res["max_abs_diff_vs_spconv"] < 1e-3
    elif with_spconv:
        assert "spconv_error" in res  # absent, or no kernels: said, not failed
