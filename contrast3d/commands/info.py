"""``contrast3d info``: versions, sparse-conv backend, threads, CUDA/spconv availability, and the
pre-training methods and shipped config presets (names for ``--config NAME``)."""
from __future__ import annotations

import argparse
import importlib
import json
import platform
from pathlib import Path
from typing import Any

from contrast3d.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, backend, threads, whether CUDA/spconv are usable, and the "
                                    "methods and config presets")
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


def methods() -> dict[str, str]:
    """``{method name: one-line description}`` of the registered pre-training methods."""
    from contrast3d.methods import METHODS

    return {name: spec.description for name, spec in METHODS.items()}


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def preset_facts(path: Path) -> str:
    """``"spunet-tiny, 2000 steps, batch 2, 5 cm voxels (CPU)"``: the headline settings of a preset file."""
    from contrast3d.config import load_yaml

    try:
        data = load_yaml(path)
    except DataError:
        return "(unreadable)"
    model, loader, cfg_data = (_section(data, k) for k in ("model", "loader", "data"))
    facts = []
    if model.get("preset"):
        facts.append(str(model["preset"]))
    if "steps" in data:
        facts.append(f"{data['steps']} steps")
    if "batch_size" in loader:
        facts.append(f"batch {loader['batch_size']}")
    if isinstance(cfg_data.get("grid_size"), (int, float)):
        facts.append(f"{100 * cfg_data['grid_size']:g} cm voxels")
    scale = "CPU" if path.stem.endswith("_cpu_small") else "GPU scale"
    return ", ".join(facts) + f" ({scale})" if facts else f"({scale})"


def presets(kind: str) -> dict[str, str]:
    """``{preset name: headline settings}`` of the shipped ``kind`` presets (``pretrain`` / ``finetune``)."""
    from contrast3d.config import PRESET_DIR, preset_names

    return {name: preset_facts(PRESET_DIR / kind / f"{name}.yaml") for name in preset_names(kind)}


def catalog_lines(kinds: tuple[str, ...] = ("pretrain", "finetune")) -> list[str]:
    """Methods and presets for people: what ``info`` and ``pretrain --list`` print."""
    known = methods()
    width = max(map(len, known), default=0)
    lines = ["methods (contrast3d pretrain METHOD; default preset: METHOD, paper/GPU scale):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in known.items()]
    for kind in kinds:
        table = presets(kind)
        width = max(map(len, table), default=0)
        lines.append(f"{kind} presets (contrast3d {kind} ... --config NAME):")
        lines += [f"  {name:<{width}}  {text}" for name, text in table.items()]
    return lines


def run(args: argparse.Namespace) -> int:
    facts = collect()
    if args.json:
        facts["methods"] = methods()
        facts["presets"] = {kind: presets(kind) for kind in ("pretrain", "finetune")}
        print(json.dumps(facts))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
        print("\n".join(catalog_lines()))
    return 0
