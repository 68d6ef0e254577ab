"""``contrast3d info``: versions, sparse-conv backend, threads, CUDA/spconv availability."""
from __future__ import annotations

import argparse
import importlib
import json
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, backend, threads and whether CUDA/spconv are usable")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def collect() -> dict:
    import torch

    import contrast3d

    def version(name: str) -> str | None:
        try:
            return getattr(importlib.import_module(name), "__version__", "installed")
        except Exception:  # noqa: BLE001 - any import failure means "not usable"
            return None

    facts = {
        "contrast3d": contrast3d.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": version("numpy"),
        "numba": version("numba"),
        "scipy": version("scipy"),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "spconv": version("spconv.pytorch"),
    }
    try:
        from contrast3d.sparse import backend as sparse_backend
        facts["sparse_backend_cpu"] = sparse_backend.backend_for(torch.device("cpu"))
        facts["sparse_backend_cuda"] = (sparse_backend.backend_for(torch.device("cuda"))
                                        if torch.cuda.is_available() else None)
    except ImportError:
        facts["sparse_backend_cpu"] = "torch"
    return facts


def run(args: argparse.Namespace) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0
