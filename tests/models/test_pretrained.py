"""One record, one loader: exported weights, training checkpoints and Pointcept .pth files."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from contrast3d.errors import DataError
from contrast3d.models import create_spunet
from contrast3d.models.backbone import spunet_record
from contrast3d.models.pretrained import (
    PretrainedRecord,
    load_into,
    load_pretrained,
    save_pointcept_pth,
    save_pretrained,
    write_safetensors,
)


@pytest.fixture()
def net():
    torch.manual_seed(0)
    m = create_spunet("spunet-tiny", 6, 0)
    with torch.no_grad():
        m.conv_input[1].running_mean.uniform_()  # a buffer that is not its default
    return m


def _save(net, path, **extra):
    rec = PretrainedRecord(**spunet_record(net, "spunet-tiny", ["color", "normal"], 0.05), method="toy", step=7,
                           **extra)
    return save_pretrained(net, path, rec)


def test_export_round_trip_and_record(net, tmp_path):
    path = _save(net, tmp_path / "backbone.safetensors")
    state = load_file(str(path))
    ref = net.state_dict()
    assert set(state) == set(ref) and all(torch.equal(state[k], v) and state[k].dtype == v.dtype
                                          for k, v in ref.items())
    rec = json.loads(path.with_suffix(".json").read_text())
    assert rec["format"] == "contrast3d-pretrained" and rec["preset"] == "spunet-tiny" and rec["step"] == 7
    assert rec["feat_keys"] == ["color", "normal"] and rec["grid_size"] == 0.05 and rec["in_channels"] == 6
    pre = load_pretrained(path)
    assert not pre.model.training and pre.record.method == "toy"
    assert all(torch.equal(pre.model.state_dict()[k], v) for k, v in ref.items())


def test_identical_weights_give_identical_bytes(net, tmp_path):
    a = _save(net, tmp_path / "a.safetensors").read_bytes()
    b = _save(net, tmp_path / "b.safetensors").read_bytes()
    assert a == b
    state = {k: v.clone() for k, v in reversed(list(net.state_dict().items()))}
    write_safetensors(state, tmp_path / "c.safetensors", {"z": "1", "a": "2"})
    write_safetensors(dict(reversed(list(state.items()))), tmp_path / "d.safetensors", {"a": "2", "z": "1"})
    assert (tmp_path / "c.safetensors").read_bytes() == (tmp_path / "d.safetensors").read_bytes()


def test_non_finite_weights_are_never_exported(net, tmp_path):
    with torch.no_grad():
        net.conv_input[1].running_var[0] = float("inf")  # a buffer, as a diverged run leaves it
    with pytest.raises(ValueError, match="non-finite"):
        _save(net, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_pointcept_pth_round_trip(net, tmp_path):
    pth = save_pointcept_pth(net, tmp_path / "model_best.pth")
    obj = torch.load(pth, weights_only=True)
    assert all(k.startswith("backbone.") for k in obj["state_dict"])
    # a Pointcept-trained checkpoint: whole segmentor under module. with a classification layer
    seg = create_spunet("spunet-tiny", 6, 20)
    torch.save({"epoch": 3, "state_dict": {f"module.backbone.{k}": v for k, v in seg.state_dict().items()}},
               tmp_path / "pointcept.pth")
    for path, ref, classes in ((pth, net, 0), (tmp_path / "pointcept.pth", seg, 20)):
        pre = load_pretrained(path)
        assert pre.record.preset == "spunet-tiny" and pre.record.num_classes == classes
        assert set(pre.record.assumed) == {"feat_keys", "grid_size"} and pre.record.feat_keys == ["color", "normal"]
        assert all(torch.equal(pre.model.state_dict()[k], v) for k, v in ref.state_dict().items())
    # a bare SpUNet (Pointcept's SpUNetBase has the same keys) loads the file after the prefix
    bare = create_spunet("spunet-tiny", 6, 0)
    bare.load_state_dict({k.removeprefix("backbone."): v for k, v in obj["state_dict"].items()})


def test_partial_load_is_an_error_naming_keys_unless_lenient(net, tmp_path):
    state = dict(net.state_dict())
    dropped = "enc.0.block0.conv1.weight"
    state.pop(dropped)
    torch.save({"state_dict": state}, tmp_path / "partial.pth")
    with pytest.raises(DataError, match=dropped.replace(".", r"\.") + ".*--lenient"):
        load_pretrained(tmp_path / "partial.pth")
    pre = load_pretrained(tmp_path / "partial.pth", lenient=True)
    assert pre.report.missing == [dropped]


def test_load_into_checks_preset_and_skips_final(net, tmp_path):
    path = _save(net, tmp_path / "backbone.safetensors")
    target = create_spunet("spunet-tiny", 6, 20)
    report, rec = load_into(target, path, expect={"preset": "spunet-tiny", "in_channels": 6})
    assert report.missing == [] and rec.preset == "spunet-tiny"
    assert torch.equal(target.state_dict()["conv_input.0.weight"], net.state_dict()["conv_input.0.weight"])
    with pytest.raises(DataError, match="model.preset=spunet-tiny.*--set model.preset=spunet-tiny"):
        load_into(create_spunet("spunet14", 6, 20), path, expect={"preset": "spunet14", "in_channels": 6})


@pytest.mark.parametrize("content,match", [(b"\x00garbage", "not a readable"), (b"", "not a readable")])
def test_unreadable_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_pretrained(path)
    bad = tmp_path / "b.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="no record"):
        load_pretrained(bad)
    bad.with_suffix(".json").write_text(json.dumps(PretrainedRecord().to_dict()))
    with pytest.raises(DataError, match="b.safetensors.*corrupt"):
        load_pretrained(bad)
    with pytest.raises(DataError, match="not found"):
        load_pretrained(tmp_path / "missing.safetensors")


def test_finetune_init_from_a_pointcept_pth(net, tmp_path):
    """What ``contrast3d finetune --init model_best.pth`` does: the backbone loads, ``final`` stays new."""
    seg = create_spunet("spunet-tiny", 6, 13)  # a Pointcept segmentor trained on another label set
    torch.save({"state_dict": {f"module.backbone.{k}": v for k, v in seg.state_dict().items()}},
               tmp_path / "model_best.pth")
    target = create_spunet("spunet-tiny", 6, 20)
    fresh_final = target.state_dict()["final.weight"].clone()
    report, rec = load_into(target, tmp_path / "model_best.pth", expect={"preset": "spunet-tiny", "in_channels": 6})
    assert rec.method == "pointcept" and report.skipped == ["final.bias", "final.weight"] and not report.missing
    assert torch.equal(target.state_dict()["final.weight"], fresh_final)
    assert torch.equal(target.state_dict()["enc.0.block0.conv1.weight"], seg.state_dict()["enc.0.block0.conv1.weight"])
