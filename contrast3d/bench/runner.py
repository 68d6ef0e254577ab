"""Plan and run the jobs of ``contrast3d bench``; reuse finished runs only when their config digest matches.

Protocol (what is run, in this order):

1. **Pre-training**, once per (method, pre-training seed), on the data folder of the method's
   ``MethodSpec.data_kind`` (:mod:`contrast3d.bench.data`). Config: the method's shipped preset
   ``<method>_cpu_small`` when there is one; otherwise its ``SPEC.smoke`` settings scaled up to the
   CPU-small scale (:data:`SCALE_UP`: 5 cm voxels, 1.5-voxel match radius, 20k-voxel views, for the
   keys the method's ``data`` section has). ``--smoke`` layers ``SPEC.smoke`` over the preset. Then
   ``--pretrain-steps`` (default: the preset's ``steps``), the pre-training seed, CPU, no loader
   workers. A method may declare ``pre_stages`` on its spec (a tuple of dicts ``{"name", "overrides":
   [--set strings], "export": export name, "into": dotted config key}``, e.g. image2point's 2D stage):
   each stage is run first and the path of its ``export`` is set as ``into`` of the next stage.
2. **Probes** of frozen features per (method, pre-training seed, probe seed = each fine-tuning seed):
   :func:`~contrast3d.evaluation.probe_data.probe_backbone` (linear and kNN probe mIoU on
   ``scenes/``). ``scratch`` is probed as a randomly initialised backbone (seeded by the pre-training
   seed) of the same architecture.
3. **Fine-tuning** per (method, pre-training seed, label budget, fine-tuning seed) with the
   ``semseg_cpu_small`` preset and ``--finetune-steps``; ``scratch`` per (budget, seed), plus the
   control ``scratch-long`` with ``long_factor`` (2.5) x the steps. The fine-tuning network takes the
   backbone's preset, input features and voxel size from its export record; a method whose record
   differs from the fine-tuning preset (e.g. geometry-only input) gets its own matched scratch runs,
   labelled ``scratch[<what differs>]``, so every gain compares like with like.
4. **Other downstream tasks** (``--tasks semseg,insseg,det``; semseg is always run): for each extra
   task (:mod:`contrast3d.bench.tasks`) exactly the fine-tuning runs of step 3 — the same pre-trained
   backbones, label splits, seeds, steps, matched scratch and ``scratch-long`` arms — with the task's
   preset (``insseg_cpu_small`` / ``det_cpu_small``, the backbone signature and run flags layered on
   top as for semseg) through :func:`~contrast3d.evaluation.finetune_tasks.finetune_task`, in
   ``OUT/finetune-<task>/``. Headline metrics: AP50 (insseg), mAP@0.25 (det). **Label budgets**: every
   budget applies to every task with the same saved split. Scene budgets keep the same fully labelled
   scenes. Points budgets limit only the class labels of insseg/det (instance masks and box geometry
   stay complete, as :mod:`contrast3d.evaluation.insseg_model` defines it), a weaker restriction than
   for semseg; the report states this in each task's section (``tasks.<task>.budget_note`` in
   ``results.json``).

**Variants** (``--variant NAME=METHOD:KEY=VALUE[;KEY=VALUE...]`` or ``NAME=METHOD:@PRESET``,
:mod:`contrast3d.bench.variants`): a method row ``NAME`` of its own, pre-trained in ``OUT/pretrain/NAME/``
with ``METHOD``'s config of step 1 plus its settings (``@PRESET`` over ``<method>_cpu_small``, ``KEY=VALUE``
layered last, so they enter its digest; the base method's runs are unchanged; ``pre_stages`` are the base
method's), then probed and fine-tuned exactly as in steps 2-4. Each variant's config is built once before
anything runs (a bad one: one error naming ``--variant``); a base method missing from ``--methods`` is
added. The report pairs a variant with its base by (pre-training seed, fine-tuning seed).

Pairing. One label split per (budget, seed) is made here (:func:`make_splits`, saved as
``OUT/splits/<budget>_s<seed>.json``, the scene list of ``1%`` budgets included) and copied into
every run of that (budget, seed) — of every task — as ``label_split.json``, which :func:`finetune_semseg`
and :func:`finetune_task` load. The
rest of a fine-tuning run depends only on its seed and the data (checked in
:mod:`contrast3d.evaluation.finetune` and :mod:`contrast3d.engine.data`): the loader's permutation
is ``randperm`` seeded by ``seed + epoch`` over the same kept scenes, each sample's augmentation is
seeded by ``(seed, epoch, index)``, the new classification layer is initialised under
``derive_seed(seed, 0)`` before the pre-trained weights replace the backbone's, and the training
RNG under ``derive_seed(seed, 1)``. So two methods with the same seed see the same labels, batches
and augmentations; only the initial backbone weights differ.

Execution (:mod:`contrast3d.bench.jobs`): every job runs in a fresh worker process with ``threads``
torch threads and no data-loader workers, ``jobs`` at once (default 2 single-thread processes); peak
RSS is the worker's ``resource.getrusage`` maximum. A job's digest is :func:`contrast3d.config.config_digest`
of its full resolved config, with paths replaced by the data digest and the digest of the pre-training
run it starts from, plus the label split's checksum. A finished job with the same digest is reused;
another digest means stale (deleted, re-run); an unfinished job is continued from its checkpoint with
``--resume`` and restarted otherwise. The thread count is not part of the digest.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contrast3d.bench.data import SMOKE, BenchData, build_builtin_data, open_data
from contrast3d.bench.jobs import JOB_FILE, Job, JobRunner
from contrast3d.bench.tasks import TASKS, parse_tasks
from contrast3d.bench.variants import Variant, parse_variants
from contrast3d.config import ConfigError, config_digest, merge, to_dict
from contrast3d.errors import DataError
from contrast3d.evaluation.splits import LabelBudget

#: CPU-small values for methods without a ``<method>_cpu_small`` preset (only keys their data section has).
SCALE_UP = {"data": {"grid_size": 0.05, "match_radius": 0.075, "max_points": 20000}}
#: ``--smoke`` sizes.
SMOKE_PRETRAIN_STEPS = 6
SMOKE_FINETUNE_STEPS = 6
SMOKE_FINETUNE = {"data": {"grid_size": 0.1, "max_points": 3000}, "model": {"preset": "spunet-tiny"}}
# (plus the task's own ``BenchTask.smoke``, e.g. ``method.eval_fragments: 1``)
#: Fields of an export record that the fine-tuning network must share with it.
SIGNATURE = ("preset", "in_channels", "feat_keys", "grid_size")


@dataclass
class BenchConfig:
    """What ``contrast3d bench`` runs (the command's flags).

    Attributes:
        methods: ``scratch`` and names in :data:`contrast3d.methods.METHODS` (scratch is always run).
        labels: label budgets (``20pts``, ``1%``, ``20pts:kmeans`` ...).
        tasks: downstream tasks (``semseg``, ``insseg``, ``det``; semseg is always run).
        seeds: fine-tuning (and probe) seeds; the pairing key.
        pretrain_seeds: one pre-training run per method and seed.
        data: ``builtin`` (built in ``OUT/data``) or a folder with the layout of :mod:`contrast3d.bench.data`.
        out: bench folder.
        smoke: tiny built-in data and few steps (minutes on 2 cores).
        resume: continue unfinished runs from their checkpoints.
        pretrain_steps, finetune_steps: ``None``: the presets' (``--smoke``: 6 each).
        jobs: worker processes at once; threads: torch threads each (``None``: cores // jobs).
        label_selection: how points budgets without a ``:random``/``:kmeans`` suffix pick points.
        long_factor: fine-tuning steps of the ``scratch-long`` control, relative.
        probe_scenes: scenes per split used by the probes.
        num_classes: classes of the labels (ScanNet-20).
        quiet: no progress output.
        variants: ``--variant`` strings ``NAME=METHOD:KEY=VALUE[;...]`` / ``NAME=METHOD:@PRESET``
            (:mod:`contrast3d.bench.variants`); a missing base method is added to ``methods``.
    """

    methods: list[str] = field(default_factory=lambda: ["scratch", "pointcontrast"])
    labels: list[str] = field(default_factory=lambda: ["20pts", "200pts"])
    tasks: list[str] = field(default_factory=lambda: ["semseg"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrain_seeds: list[int] = field(default_factory=lambda: [0])
    data: str = "builtin"
    out: str = "runs/bench"
    smoke: bool = False
    resume: bool = False
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    jobs: int = 2
    threads: int | None = None
    label_selection: Literal["random", "kmeans"] = "random"
    long_factor: float = 2.5
    probe_scenes: int = 8
    num_classes: int = 20
    quiet: bool = False
    variants: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- configs
def _safe(text: str) -> str:
    return text.replace("%", "pct").replace(":", "-").replace("/", "_").replace(" ", "")


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def pretrain_config(name: str, spec: Any, data_root: str | Path, seed: int, steps: int | None, smoke: bool,
                    overrides: list[str] | tuple[str, ...] = (), presets: list[str] | tuple[str, ...] = ()):
    """The resolved pre-training :class:`~contrast3d.engine.config.TrainConfig` (module docstring, step 1).

    ``presets`` (a variant's ``@PRESET`` items) are layered over ``<name>_cpu_small`` and under the bench's
    flags, keeping the steps the config has without them; ``overrides`` (``--set`` strings) are layered last.
    """
    from contrast3d.config import preset_names
    from contrast3d.methods import method_config

    preset = f"{name}_cpu_small"
    files = [preset] if preset in preset_names("pretrain") else []
    flags: dict[str, Any] = {}
    if smoke or not files:
        flags = merge(flags, copy.deepcopy(spec.smoke))
    if not files and not smoke:
        data_keys = _fields(spec.data_config_cls)
        flags = merge(flags, {"data": {k: v for k, v in SCALE_UP["data"].items() if k in data_keys}})
    flags = merge(flags, {"data_root": str(data_root), "seed": int(seed), "device": "cpu", "progress": False,
                          "loader": {"num_workers": 0}})
    if steps or smoke:
        flags["steps"] = int(steps or SMOKE_PRETRAIN_STEPS)
    elif presets:  # a layered preset (e.g. paper scale) does not change the bench's pre-training budget
        flags["steps"] = pretrain_config(name, spec, data_root, seed, steps, smoke).steps
    cfg = method_config(name, files=files + list(presets), flags=flags, overrides=list(overrides))
    cfg.checkpoint_every = max(1, cfg.steps // 5)
    cfg.log_every = max(1, min(cfg.log_every, cfg.steps // 10))
    return cfg


def finetune_config(data_root: str | Path, init: str, labels: str, seed: int, steps: int | None, smoke: bool,
                    signature: dict[str, Any] | None = None, task: str = "semseg"):
    """The resolved fine-tuning config of ``task``: its preset (``semseg_cpu_small``, ``insseg_cpu_small``,
    ``det_cpu_small``) + the backbone ``signature`` + run flags."""
    from contrast3d.evaluation.finetune import load_finetune_config
    from contrast3d.evaluation.finetune_tasks import load_task_config

    spec = TASKS[task]
    flags: dict[str, Any] = merge(copy.deepcopy(SMOKE_FINETUNE), copy.deepcopy(spec.smoke)) if smoke else {}
    if signature:
        flags = merge(flags, {"model": {"preset": signature["preset"], "in_channels": signature["in_channels"]},
                              "data": {"feat_keys": list(signature["feat_keys"]),
                                       "grid_size": signature["grid_size"]}})
    flags = merge(flags, {"data_root": str(data_root), "seed": int(seed), "device": "cpu", "progress": False,
                          "loader": {"num_workers": 0},
                          "method": {"init": init, "labels": labels, "eval_every": 0}})
    if steps or smoke:
        flags["steps"] = int(steps or SMOKE_FINETUNE_STEPS)
    if task == "semseg":
        cfg = load_finetune_config(files=[spec.preset], flags=flags)
    else:
        cfg = load_task_config(task, files=[spec.preset], flags=flags)
    cfg.checkpoint_every = max(1, cfg.steps // 4)
    cfg.log_every = max(1, min(cfg.log_every, cfg.steps // 10))
    return cfg


def signature_of(cfg_or_record: Any) -> dict[str, Any]:
    """``{preset, in_channels, feat_keys, grid_size}`` of a fine-tuning config or an export record (dict)."""
    if isinstance(cfg_or_record, dict):
        r = cfg_or_record
        return {"preset": r["preset"], "in_channels": int(r["in_channels"]), "feat_keys": list(r["feat_keys"]),
                "grid_size": float(r["grid_size"])}
    c = cfg_or_record
    return {"preset": c.model.preset, "in_channels": int(c.model.in_channels), "feat_keys": list(c.data.feat_keys),
            "grid_size": float(c.data.grid_size)}


def scratch_label(sig: dict[str, Any], base: dict[str, Any], long: bool = False) -> str:
    """``scratch`` for the base signature, else ``scratch[feat_keys=ones,...]`` (what differs)."""
    name = "scratch-long" if long else "scratch"
    diff = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sig.items() if base.get(k) != v]
    return name + (f"[{';'.join(diff)}]" if diff else "")


def _digest(cfg: Any, **replace: Any) -> str:
    """Config digest with run-specific paths replaced by what they stand for."""
    d = to_dict(cfg)
    d["data_root"] = replace.pop("data_root")
    for k, v in replace.items():
        parts = k.split(".")
        node = d
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = v
    return config_digest(d)


# ----------------------------------------------------------------------------- splits
def make_splits(data: BenchData, budgets: list[str], seeds: list[int], out: Path) -> dict[tuple[str, int], Path]:
    """One saved label split per (budget, seed), shared by every method (reused while the data is the same)."""
    from contrast3d.data.scene_dataset import find_scene_dirs
    from contrast3d.evaluation.splits import LabelSplit, make_split
    from contrast3d.io.pointcept import read_pointcept_scene

    folder = out / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    dirs = [d for d in find_scene_dirs(data.scenes / "train", "coord.npy")  # labelled scenes, as fine-tuning
            if (d / "segment20.npy").is_file() or (d / "segment.npy").is_file()]
    if not dirs:
        raise DataError(data.scenes / "train", "no labelled scene (segment20.npy / segment.npy)")
    clouds: dict[str, Any] = {}
    paths = {}
    for budget in budgets:
        parsed = LabelBudget.parse(budget)
        for seed in seeds:
            path = folder / f"{_safe(budget)}_s{seed}.json"
            meta = path.with_name(path.stem + ".meta.json")
            if path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("data") == data.digest:
                paths[(budget, seed)] = path
                continue
            if parsed.needs_labels and not clouds:
                clouds = {d.name: read_pointcept_scene(d) for d in dirs}
            names = [d.name for d in dirs]
            segs = {n: c.segment for n, c in clouds.items()} if clouds else None
            coords = {n: c.coord for n, c in clouds.items()} if clouds else None
            if segs is not None and any(s is None for s in segs.values()):
                raise DataError(data.scenes / "train", "a training scene has no labels (segment20.npy / segment.npy)")
            split: LabelSplit = make_split(parsed, names, segs, seed, coords=coords)
            split.save(path)
            meta.write_text(json.dumps({"data": data.digest, "budget": budget, "seed": seed}) + "\n")
            paths[(budget, seed)] = path
    return paths


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the bench
def _check_methods(names: list[str]) -> list[str]:
    from contrast3d.methods import METHODS

    unknown = [m for m in names if m != "scratch" and m not in METHODS]
    if unknown:
        raise ConfigError("--methods", f"unknown method(s) {', '.join(unknown)}; known: scratch, {', '.join(METHODS)}")
    return ["scratch"] + [m for m in dict.fromkeys(names) if m != "scratch"]


def _open_data(cfg: BenchConfig, out: Path) -> BenchData:
    if cfg.data in ("", "builtin"):
        from contrast3d.bench.data import BUILTIN

        return build_builtin_data(out / "data", SMOKE if cfg.smoke else BUILTIN, workers=cfg.jobs, quiet=cfg.quiet)
    return open_data(cfg.data)


def _check_instances(data: BenchData, tasks: list[str]) -> None:
    """insseg / det need ``instance.npy`` in every scene of ``scenes/train`` and ``scenes/val``: one clear error."""
    for split in ("train", "val"):
        for d in sorted(p for p in (data.scenes / split).iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (d / "coord.npy").is_file() and not (d / "instance.npy").is_file():
                raise DataError(d, f"no instance.npy: --tasks {','.join(t for t in tasks if t != 'semseg')} "
                                   "need instance labels in every scene of DATA/scenes/train and DATA/scenes/val")


def _check_variants(cfg: BenchConfig, methods: list[str]) -> tuple[list[str], list[Variant], list[dict[str, Any]]]:
    """Parse ``--variant`` and build each variant's pre-training config once (any problem: one ``DataError``
    naming ``--variant``). Returns the methods with missing base methods added, the variants and their
    ``results.json`` records (``same_config_as_base``: the settings change nothing)."""
    from contrast3d.methods import METHODS

    variants = parse_variants(cfg.variants, methods)
    methods = methods + list(dict.fromkeys(v.method for v in variants if v.method not in methods))
    seed = cfg.pretrain_seeds[0] if cfg.pretrain_seeds else 0
    infos = []
    for v in variants:
        spec = METHODS[v.method]
        try:
            mine = pretrain_config(v.method, spec, "DATA", seed, cfg.pretrain_steps, cfg.smoke, v.overrides,
                                   v.presets)
            base = pretrain_config(v.method, spec, "DATA", seed, cfg.pretrain_steps, cfg.smoke)
        except DataError as err:
            raise DataError("--variant", f"'{v.name}': {err.source.removeprefix('--set ')}: {err.reason}") from None
        except ValueError as err:  # a config's own check (__post_init__)
            raise DataError("--variant", f"'{v.name}': {err}") from None
        infos.append({**v.to_dict(), "same_config_as_base": config_digest(mine) == config_digest(base)})
    return methods, variants, infos


def _pretrain_chain(name: str, spec: Any, data: BenchData, seed: int, cfg: BenchConfig, out: Path,
                    variant: Variant | None = None) -> list[Job]:
    """The jobs of one (method or variant, seed) pre-training: the method's ``pre_stages`` (if any; a variant
    shares its base method's, same keys and folders), then the main run (a variant's settings layered)."""
    root = data.folder(spec.data_kind)
    folder = out / "pretrain" / (variant.name if variant else name) / f"p{seed}"
    stages = list(getattr(spec, "pre_stages", ()) or ())
    chain = []
    for st in stages:
        scfg = pretrain_config(name, spec, root, seed, cfg.pretrain_steps, cfg.smoke, st.get("overrides", []))
        # beside the main run's folder, never inside it: starting the main run afresh clears its folder
        stage_folder = out / "pretrain" / name / f"p{seed}-stage-{st['name']}"
        chain.append(Job("pretrain", (name, seed, st["name"]), stage_folder,
                         _digest(scfg, data_root=data.digest), {"cfg": scfg, "spec": spec, "stage": st}))
    main = pretrain_config(name, spec, root, seed, cfg.pretrain_steps, cfg.smoke,
                           variant.overrides if variant else (), variant.presets if variant else ())
    chain.append(Job("pretrain", (variant.name if variant else name, seed), folder,
                     _digest(main, data_root=data.digest), {"cfg": main, "spec": spec}))
    return chain


def _run_pretraining(methods: list[str], data: BenchData, cfg: BenchConfig, out: Path, runner: JobRunner,
                     variants: list[Variant] | None = None) -> dict[tuple, dict[str, Any]]:
    """Pre-train every (method or variant, seed): round r runs the r-th job of every chain (stages feed the
    next; a stage shared by a method and its variants runs once). Keys: ``(label, pretrain seed)``."""
    from contrast3d.methods import METHODS

    chains = [_pretrain_chain(m, METHODS[m], data, s, cfg, out) for m in methods if m != "scratch"
              for s in cfg.pretrain_seeds]
    chains += [_pretrain_chain(v.method, METHODS[v.method], data, s, cfg, out, v) for v in variants or []
               for s in cfg.pretrain_seeds]
    rounds = max((len(c) for c in chains), default=0)
    results: dict[tuple, dict[str, Any]] = {}
    for r in range(rounds):
        batch = []
        keys: set[tuple] = set()
        for chain in chains:
            if r >= len(chain) or chain[r].key in keys:
                continue
            job = chain[r]
            keys.add(job.key)
            if r > 0:  # feed the previous stage's export into this one
                prev = chain[r - 1]
                got = results.get(prev.key)
                if got is None:
                    continue
                st = prev.payload["stage"]
                path = str(prev.folder / got["exports"][st["export"]])
                node = job.payload["cfg"]
                *parents, leaf = st["into"].split(".")
                for p in parents:
                    node = getattr(node, p)
                setattr(node, leaf, path)
                job.digest = _digest(job.payload["cfg"], data_root=data.digest,
                                     **{st["into"]: f"stage:{prev.digest}"})
            batch.append(job)
        results.update(runner.run(batch, "pre-train" if rounds == 1 else f"pre-train {r + 1}/{rounds}"))
    return {k: v for k, v in results.items() if len(k) == 2}


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmark of ``cfg`` into ``cfg.out``; returns ``results.json``'s content."""
    from contrast3d.bench.report import summarize, write_report

    t0 = time.perf_counter()
    out = Path(cfg.out)
    methods = _check_methods(cfg.methods)
    methods, variants, variant_info = _check_variants(cfg, methods)
    out.mkdir(parents=True, exist_ok=True)
    try:
        tasks = parse_tasks(cfg.tasks)
    except ValueError as err:
        raise ConfigError("--tasks", str(err)) from None
    try:
        budgets = list(dict.fromkeys(str(LabelBudget.parse(b, cfg.label_selection)) for b in cfg.labels))
    except ValueError as err:
        raise ConfigError("--labels", str(err)) from None
    if not cfg.seeds:
        raise ConfigError("--seeds", "give at least one fine-tuning seed")
    if not cfg.pretrain_seeds:
        raise ConfigError("--pretrain-seeds", "give at least one pre-training seed")
    data = _open_data(cfg, out)
    if len(tasks) > 1:
        _check_instances(data, tasks)
    threads = cfg.threads or max(1, (os.cpu_count() or 2) // max(1, cfg.jobs))
    if "OMP_NUM_THREADS" in os.environ:
        threads = min(threads, max(1, int(os.environ["OMP_NUM_THREADS"] or 1)))
    (out / "bench.json").write_text(json.dumps({**dataclasses.asdict(cfg), "threads": threads,
                                                "data_digest": data.digest, "data_root": str(data.root)},
                                               indent=1) + "\n")
    t_data = time.perf_counter()
    splits = make_splits(data, budgets, cfg.seeds, out)
    runner = JobRunner(cfg.jobs, threads, cfg.resume, cfg.quiet)
    pre = _run_pretraining(methods, data, cfg, out, runner, variants)
    t_pre = time.perf_counter()

    base_cfg = finetune_config(data.scenes, "scratch", budgets[0], cfg.seeds[0], cfg.finetune_steps, cfg.smoke)
    base = signature_of(base_cfg)
    steps = base_cfg.steps
    long_steps = int(math.ceil(cfg.long_factor * steps))
    sigs: dict[str, dict[str, Any]] = {"scratch": base}
    baseline_of: dict[str, str] = {}
    skipped = []
    for (m, p), res in pre.items():
        rec = res.get("record")
        if rec is None or rec.get("kind") != "spunet" or rec.get("ndim") != 3:
            skipped.append(f"{m} (pre-training seed {p}): no 3D SpUNet backbone export to fine-tune")
            continue
        sig = res["signature"] = signature_of(rec)
        label = scratch_label(sig, base)
        sigs[label] = sig
        baseline_of[m] = label
    jobs: list[Job] = []
    split_sha = {k: _sha(v) for k, v in splits.items()}

    def finetune_job(task: str, init: str, init_id: str, sig: dict[str, Any], budget: str, seed: int,
                     n_steps: int, label: str, pseed: int | None) -> Job:
        """One fine-tuning run; its digest: the resolved config (``method_name`` is the task) + split checksum."""
        fcfg = finetune_config(data.scenes, init, budget, seed, n_steps, cfg.smoke, sig, task)
        digest = _digest(fcfg, data_root=data.digest, **{"method.init": init_id}) + split_sha[(budget, seed)]
        top = out / ("finetune" if task == "semseg" else f"finetune-{task}") / _safe(label)
        folder = (top if pseed is None else top / f"p{pseed}") / f"{_safe(budget)}_s{seed}"
        key = ("finetune" if task == "semseg" else f"finetune-{task}", label, pseed, budget, seed)
        return Job("finetune", key, folder, hashlib.sha256(digest.encode()).hexdigest()[:16],
                   {"cfg": fcfg, "split": str(splits[(budget, seed)]), "task": task})

    def probe_job(key: tuple, folder: Path, digest_parts: list[Any], payload: dict[str, Any]) -> Job:
        payload = {"scenes": str(data.scenes), "num_classes": cfg.num_classes, "max_scenes": cfg.probe_scenes,
                   **payload}
        digest = config_digest([data.digest, cfg.num_classes, cfg.probe_scenes, *digest_parts])
        return Job("probe", key, folder, digest, payload)

    for label, sig in sigs.items():
        long_label = scratch_label(sig, base, long=True)
        for task in tasks:
            for budget in budgets:
                for s in cfg.seeds:
                    jobs.append(finetune_job(task, "scratch", "scratch", sig, budget, s, steps, label, None))
                    jobs.append(finetune_job(task, "scratch", "scratch", sig, budget, s, long_steps, long_label,
                                             None))
        for p in cfg.pretrain_seeds:
            for s in cfg.seeds:
                jobs.append(probe_job(("probe", label, p, s), out / "probe" / _safe(label) / f"p{p}_s{s}",
                                      ["random", sig, p, s], {"random": sig, "init_seed": p, "seed": s}))
    for (m, p), res in pre.items():
        if m not in baseline_of:
            continue
        pdir = out / "pretrain" / m / f"p{p}"
        backbone = str(pdir / res["exports"]["backbone"])
        pdig = _read_digest(pdir)
        for s in cfg.seeds:
            jobs.append(probe_job(("probe", m, p, s), out / "probe" / m / f"p{p}_s{s}", [pdig, s],
                                  {"init": backbone, "seed": s}))
            for task in tasks:
                for budget in budgets:
                    jobs.append(finetune_job(task, backbone, f"pretrain:{pdig}", sigs[baseline_of[m]], budget, s,
                                             steps, m, p))
    done = runner.run(jobs, "probe + fine-tune")
    t_end = time.perf_counter()

    records: list[dict[str, Any]] = []
    for (m, p), res in pre.items():
        records.append({"kind": "pretrain", "method": m, "pretrain_seed": p, **res})
    for job in jobs:
        got = done.get(job.key)
        if got is None:
            continue
        _, m, p, *rest = job.key
        rec = {"kind": job.kind, "method": m, "pretrain_seed": p, **got}
        if job.kind == "finetune":
            rec.update(task=job.payload["task"], budget=rest[0], seed=rest[1],
                       split_sha=split_sha[(rest[0], rest[1])])
        else:
            rec.update(seed=rest[0])
        rec["baseline"] = baseline_of.get(m, m.replace("scratch-long", "scratch"))
        records.append(rec)
    meta = {"config": {**dataclasses.asdict(cfg), "methods": methods, "labels": budgets, "tasks": tasks,
                       "threads": threads},
            "data": {"root": str(data.root), "digest": data.digest, "builtin": data.builtin, **data.info},
            "variants": variant_info,
            "finetune_steps": steps, "long_steps": long_steps, "signatures": sigs, "baseline_of": baseline_of,
            "skipped": skipped, "failed": runner.failed, "reused_runs": runner.reused,
            "minutes": {"data_and_setup": round((t_data - t0) / 60, 2), "pretrain": round((t_pre - t_data) / 60, 2),
                        "probe_and_finetune": round((t_end - t_pre) / 60, 2),
                        "total": round((time.perf_counter() - t0) / 60, 2)}}
    summary = summarize(records, meta)
    write_report(out, summary)
    return summary


def _read_digest(folder: Path) -> str:
    try:
        return str(json.loads((folder / JOB_FILE).read_text())["digest"])
    except (OSError, ValueError, KeyError):
        return "unknown"


__all__ = ["BenchConfig", "finetune_config", "make_splits", "pretrain_config", "run_bench", "scratch_label",
           "signature_of"]
