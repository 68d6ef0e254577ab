"""Pre-trained weights: one typed record, one writer, one loader.

Every network the project hands to users is two files::

    NAME.safetensors   the state dict (keys exactly the module's ``state_dict`` keys)
    NAME.json          a :class:`PretrainedRecord`: what the network is and how to feed it

:func:`load_pretrained` is the only way the commands (``finetune``, ``probe``, ``viz``, ``bench``)
read weights. It accepts

* a ``.safetensors`` file with its ``.json`` record (what ``contrast3d pretrain`` writes);
* a contrast3d training checkpoint (``checkpoints/last.pt``): its ``exports`` entry holds each
  network's record and its key prefix inside the method's state dict;
* a Pointcept checkpoint (``.pth``: ``{"state_dict": ...}``, keys with ``module.``/``backbone.``
  prefixes). It has no record: the SpUNet widths are read from the tensor shapes (exact, not a
  guess), and the two things shapes cannot tell are Pointcept's ScanNet defaults, listed in
  ``record.assumed``: ``feat_keys`` (``[color, normal]`` for 6 input channels, ``[color]`` for 3)
  and ``grid_size`` 0.02 m. Override them with the commands' flags if your Pointcept run differed.

A partial load (a missing or unexpected key, a different shape or preset) is a
:class:`~contrast3d.errors.DataError` naming the keys, unless ``lenient=True``.

The safetensors writer is our own (the format is 8 bytes of header length, a JSON header, raw
little-endian tensor bytes): keys and metadata are written sorted, so identical weights always
give byte-identical files (checksums are how users verify downloads).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from contrast3d.errors import DataError

FORMAT = "contrast3d-pretrained"
VERSION = 1
#: Pointcept's ScanNet defaults, used for a ``.pth`` without a record (see the module docstring).
POINTCEPT_GRID_SIZE = 0.02
POINTCEPT_FEAT_KEYS = {6: ["color", "normal"], 3: ["color"]}
STEM_KEY = "conv_input.0.weight"


@dataclass
class PretrainedRecord:
    """What an exported network is and how to feed it (the ``.json`` next to the weights).

    Attributes:
        kind: ``spunet`` (3D or 4D sparse U-Net, see ``ndim``) or ``image_unet`` (2D pixel network).
        preset: preset name (:data:`contrast3d.models.SPUNET_PRESETS` or the image-net presets), or
            ``custom`` when the widths match none.
        ndim: 3 (x, y, z voxels) or 4 (x, y, z, t) for SpUNets; 2 for image networks.
        base_channels, channels, layers: SpUNet widths and depths.
        in_channels: input feature width (3D: width of ``feat_keys``; 2D: 3 = RGB).
        num_classes: width of a classification layer ``final`` (0: a feature backbone).
        out_channels: output feature width.
        feat_keys: per-point arrays concatenated into the 3D input, in order.
        grid_size: voxel edge in metres used in training (3D).
        color_range: the range colours are fed in (``[0, 1]`` throughout this project).
        method: the pre-training method (or fine-tuning task) that produced the weights.
        step: optimizer steps trained.
        config_digest: :func:`contrast3d.config.config_digest` of the run's resolved config.
        package_version: contrast3d version that wrote the file.
        weights: the weights file's name; sha256: its checksum (written by :func:`save_pretrained`).
        assumed: fields not known from the file but assumed (Pointcept ``.pth``).
        extra: anything else a method wants to record (e.g. the image size of a 2D network).
    """

    kind: Literal["spunet", "image_unet"] = "spunet"
    preset: str = "custom"
    ndim: int = 3
    base_channels: int = 0
    channels: list[int] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)
    in_channels: int = 0
    num_classes: int = 0
    out_channels: int = 0
    feat_keys: list[str] = field(default_factory=list)
    grid_size: float | None = None
    color_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    method: str = ""
    step: int = 0
    config_digest: str = ""
    package_version: str = ""
    weights: str = ""
    sha256: str = ""
    assumed: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path) -> PretrainedRecord:
        """Validate a record read from JSON; :class:`DataError` naming ``source`` otherwise."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(source, f"not a contrast3d weights record (no \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise DataError(source, f"record version {data.get('version')} is not supported (expected {VERSION})")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DataError(source, f"unknown record field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise DataError(source, f"invalid record: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadReport:
    """Keys of a load: ``loaded``, ``missing`` (model keys absent from the file), ``unexpected``
    (file keys the model lacks), ``skipped`` (file keys deliberately not loaded, e.g. ``final.*``)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["num_loaded"] = len(self.loaded)
        del out["loaded"]
        return out

    def summary(self) -> str:
        return (f"init {self.path}: loaded {len(self.loaded)} tensors; missing {len(self.missing)} "
                f"({_few(self.missing)}); unexpected {len(self.unexpected)} ({_few(self.unexpected)}); "
                f"skipped {len(self.skipped)}")


@dataclass
class Pretrained:
    """A loaded network (``eval()`` mode) with its record and load report."""

    model: nn.Module
    record: PretrainedRecord
    report: LoadReport


#: Largest magnitude a weight or buffer may have: its square must not overflow float32 (3.4e38), or the
#: first forward pass (a BatchNorm variance, a squared distance) turns it into Inf. A run whose weights
#: passed it has diverged as surely as one with NaN.
MAX_ABS_WEIGHT = 1e18


def diverged_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors of ``state`` with NaN/Inf or ``|x| > MAX_ABS_WEIGHT``."""
    bad = []
    for key, value in state.items():
        if value.is_floating_point() and value.numel():
            if not bool(torch.isfinite(value).all()) or float(value.abs().max()) > MAX_ABS_WEIGHT:
                bad.append(key)
    return bad


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (" ..." if len(keys) > n else "")


# ----------------------------------------------------------------------------- safetensors, byte-stable
_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


def write_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``state`` as a safetensors file, keys and metadata sorted (identical input, identical
    bytes), via a temporary file renamed into place."""
    path = Path(path)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    blobs, offset = [], 0
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError(f"cannot store dtype {t.dtype} of '{key}' in safetensors")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in blobs:
            f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; :class:`DataError` if missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(path, f"corrupt or not a safetensors file ({str(err).splitlines()[0] if str(err) else err})"
                        ) from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- writing
def save_pretrained(module: nn.Module, path: str | Path, record: PretrainedRecord) -> Path:
    """Write ``module``'s weights to ``path`` (``.safetensors``) and ``record`` to ``path.with_suffix('.json')``.

    Refuses (``ValueError``) a state dict with a non-finite tensor (parameters and buffers), so a
    diverged run never exports broken weights.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    bad = diverged_tensors(state)
    if bad:
        raise ValueError(f"refusing to export {path.name}: non-finite (or |x| > {MAX_ABS_WEIGHT:g}) values in "
                         f"{len(bad)} tensor(s) ({_few(bad)})")
    write_safetensors(state, path, {"format": "pt", "producer": "contrast3d"})
    record.weights = path.name
    record.sha256 = file_sha256(path)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, meta)
    return path


def save_pointcept_pth(module: nn.Module, path: str | Path, prefix: str = "backbone.") -> Path:
    """A ``.pth`` Pointcept loads: ``{"state_dict": {prefix + key: tensor}}``.

    ``backbone.`` is what Pointcept's ``DefaultSegmentor``/``DefaultSegmentorV2`` expect when the file
    is given as ``weight=`` for fine-tuning; pass ``prefix=""`` for a bare ``SpUNetBase.load_state_dict``.
    """
    path = Path(path)
    state = {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- reading
def read_weights(path: str | Path, name: str = "backbone") -> tuple[dict[str, torch.Tensor], PretrainedRecord]:
    """State dict and record of ``path`` (any of the three kinds in the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "weights file not found")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    if path.suffix == ".safetensors":
        meta = path.with_suffix(".json")
        if not meta.is_file():
            raise DataError(path, f"no record {meta.name} next to the weights (written with every export)")
        try:
            data = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DataError(meta, f"unreadable record ({err})") from None
        return read_safetensors(path), PretrainedRecord.from_dict(data, meta)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle, EOF errors all mean "unreadable"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(path, f"not a readable weights file: .safetensors (+ .json) or a torch checkpoint ({reason})"
                        ) from None
    if not isinstance(obj, dict):
        raise DataError(path, "checkpoint is not a dict")
    if obj.get("format") == "contrast3d-checkpoint":
        return _from_training_checkpoint(obj, path, name)
    return _from_pointcept(obj, path)


def _from_training_checkpoint(ckpt: dict[str, Any], path: Path, name: str) -> tuple[dict, PretrainedRecord]:
    exports = ckpt.get("exports") or {}
    if name not in exports:
        raise DataError(path, f"checkpoint has no exported network '{name}' (has: {', '.join(exports) or 'none'})")
    entry = exports[name]
    prefix = entry.get("prefix", "")
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    record = PretrainedRecord.from_dict(entry["record"], path)
    return state, record


def _strip(state: dict[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _from_pointcept(obj: dict[str, Any], path: Path) -> tuple[dict, PretrainedRecord]:
    state = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "no state dict of tensors found (expected Pointcept's {'state_dict': ...})")
    state = _strip(state, ("module.",))
    if not any(k == STEM_KEY for k in state):  # a whole segmentor: keep its backbone
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if STEM_KEY not in state:
        raise DataError(path, f"no SpUNet backbone in the checkpoint (no key '{STEM_KEY}' under "
                              f"'', 'module.' or 'backbone.')")
    return state, _record_from_shapes(state, path)


def _record_from_shapes(state: dict[str, torch.Tensor], path: Path) -> PretrainedRecord:
    """SpUNet widths read from a state dict's tensor shapes (spconv layout ``[C_out, k.., C_in]``)."""
    from contrast3d.models.presets import SPUNET_PRESETS

    stem = state[STEM_KEY]
    ndim = stem.ndim - 2
    in_channels, base = int(stem.shape[-1]), int(stem.shape[0])
    stages = 0
    while f"down.{stages}.0.weight" in state:
        stages += 1
    if stages == 0:
        raise DataError(path, "not a SpUNet state dict (no 'down.0.0.weight')")
    n = 2 * stages
    channels, layers = [0] * n, [0] * n
    for s in range(stages):
        channels[s] = int(state[f"down.{s}.0.weight"].shape[0])
        channels[n - 1 - s] = int(state[f"up.{s}.0.weight"].shape[0])
        layers[s] = len({k.split(".")[2] for k in state if k.startswith(f"enc.{s}.block")})
        layers[n - 1 - s] = len({k.split(".")[2] for k in state if k.startswith(f"dec.{s}.block")})
    num_classes = int(state["final.bias"].shape[0]) if "final.bias" in state else 0
    preset = next((name for name, p in SPUNET_PRESETS.items() if p.base_channels == base
                   and list(p.channels) == channels and list(p.layers) == layers), "custom")
    feat_keys = POINTCEPT_FEAT_KEYS.get(in_channels)
    if feat_keys is None:
        raise DataError(path, f"a Pointcept checkpoint with {in_channels} input channels: cannot assume its "
                              f"feat_keys (only 3 = color, 6 = color + normal are known)")
    return PretrainedRecord(kind="spunet", preset=preset, ndim=ndim, base_channels=base, channels=channels,
                            layers=layers, in_channels=in_channels, num_classes=num_classes,
                            out_channels=num_classes or channels[-1], feat_keys=list(feat_keys),
                            grid_size=POINTCEPT_GRID_SIZE, method="pointcept", assumed=["feat_keys", "grid_size"])


def build_from_record(record: PretrainedRecord) -> nn.Module:
    """An untrained network with the architecture of ``record``."""
    if record.kind == "spunet":
        from contrast3d.models.spunet import SpUNet

        return SpUNet(record.in_channels, record.num_classes, base_channels=record.base_channels,
                      channels=record.channels, layers=record.layers, ndim=record.ndim)
    if record.kind == "image_unet":
        from contrast3d.models import image_unet

        return image_unet.create_image_unet(record.preset, out_channels=record.out_channels)
    raise ValueError(f"unknown network kind '{record.kind}'")


def check_keys(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, *, lenient: bool = False,
               skip: tuple[str, ...] = ()) -> LoadReport:
    """Load ``state`` into ``model`` (keys starting with a ``skip`` prefix are not loaded).

    Raises :class:`DataError` naming the keys for a missing/unexpected key or a shape mismatch,
    unless ``lenient`` (then every matching key is loaded and the report lists the rest).
    """
    own = model.state_dict()
    report = LoadReport(str(path))
    report.skipped = sorted(k for k in state if k.startswith(skip)) if skip else []
    body = {k: v for k, v in state.items() if not (skip and k.startswith(skip))}
    bad = [k for k, v in body.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    report.missing = sorted(k for k in own if k not in body and not (skip and k.startswith(skip)))
    report.unexpected = sorted(k for k in body if k not in own)
    if bad and not lenient:
        k = bad[0]
        raise DataError(path, f"{len(bad)} tensor(s) differ in shape from the model, e.g. '{k}' is "
                              f"{list(body[k].shape)} in the file but {list(own[k].shape)} in the model")
    if (report.missing or report.unexpected) and not lenient:
        raise DataError(path, f"partial load: {len(report.missing)} model key(s) missing from the file "
                              f"({_few(report.missing)}), {len(report.unexpected)} unexpected "
                              f"({_few(report.unexpected)}); pass --lenient to load the matching keys only")
    loadable = {k: v for k, v in body.items() if k in own and k not in bad}
    if not loadable:
        raise DataError(path, "no tensor of the file matches the model")
    with torch.no_grad():
        for k, v in loadable.items():
            own[k].copy_(v.to(own[k].dtype))
    report.loaded = sorted(loadable)
    return report


def load_pretrained(path: str | Path, *, name: str = "backbone", device: str | torch.device = "cpu",
                    lenient: bool = False, require_finite: bool = True) -> Pretrained:
    """Rebuild and load the network stored at ``path`` (module docstring for the accepted files).

    Args:
        path: ``.safetensors`` (+ ``.json``), a contrast3d training checkpoint, or a Pointcept ``.pth``.
        name: which exported network of a training checkpoint (``backbone``, ``image_net`` ...).
        device: where to put the model (returned in ``eval()`` mode).
        lenient: load the matching keys of a partial state dict instead of refusing it.
        require_finite: refuse weights with NaN/Inf (a diverged run).
    """
    state, record = read_weights(path, name)
    if require_finite:
        bad = diverged_tensors(state)
        if bad:
            raise DataError(path, f"non-finite (or |x| > {MAX_ABS_WEIGHT:g}) weights in {len(bad)} tensor(s) "
                                  f"({_few(bad)}): a diverged run?")
    try:
        model = build_from_record(record)
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(path, f"record describes no buildable network: {err}") from None
    report = check_keys(model, state, path, lenient=lenient)
    return Pretrained(model.to(device).eval(), record, report)


def load_into(net: nn.Module, path: str | Path, *, lenient: bool = False, skip: tuple[str, ...] = ("final.",),
              expect: dict[str, Any] | None = None) -> tuple[LoadReport, PretrainedRecord]:
    """Initialise ``net`` (e.g. a fine-tuning SpUNet with a new ``final`` layer) from ``path``.

    ``expect`` holds record fields the caller's model was built with (``preset``, ``in_channels``);
    a difference is a :class:`DataError` with the ``--set`` that fixes it, unless ``lenient``.
    """
    state, record = read_weights(path)
    bad = diverged_tensors(state)
    if bad:
        raise DataError(path, f"non-finite (or |x| > {MAX_ABS_WEIGHT:g}) weights in {len(bad)} tensor(s) "
                                  f"({_few(bad)}): a diverged run?")
    if expect is None and isinstance(getattr(net, "in_channels", None), int):
        expect = {"in_channels": net.in_channels}
    for key, want in (expect or {}).items():
        have = getattr(record, key)
        if have != want and not lenient and not (key == "preset" and "custom" in (have, want)):
            raise DataError(path, f"the weights are model.{key}={have} but the model being trained is "
                                  f"model.{key}={want}; use --set model.{key}={have}")
    return check_keys(net, state, path, lenient=lenient, skip=skip), record
