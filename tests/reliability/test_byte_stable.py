"""Item 8 of issue 17: identical weights give byte-identical exports (checksums verify downloads)."""
from __future__ import annotations

import json

import tiny_data as T
import torch
from safetensors import safe_open

from contrast3d.models.pretrained import file_sha256, read_safetensors, write_safetensors


def test_two_identical_runs_give_identical_backbone_bytes(tiny, cli, tmp_path):
    again = tmp_path / "again"
    code, _, err = cli(["pretrain", "pointcontrast", "--data", tiny["pairs"], "--out", again, "--steps", "2",
                        *T.TINY_PRETRAIN])  # the arguments of the session's reference run
    assert code == 0, err
    ref = tiny["run"]
    assert (again / "backbone.safetensors").read_bytes() == (ref / "backbone.safetensors").read_bytes()
    assert (again / "backbone.json").read_bytes() == (ref / "backbone.json").read_bytes()
    assert json.loads((ref / "backbone.json").read_text())["sha256"] == file_sha256(ref / "backbone.safetensors")


def test_writer_bytes_do_not_depend_on_key_or_metadata_order(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {"b.weight": torch.randn(3, 2, generator=g), "a.bias": torch.randn(4, generator=g),
             "c.count": torch.tensor(7), "a.empty": torch.zeros(0, 3)}
    meta = {"producer": "contrast3d", "format": "pt", "z": "last"}
    write_safetensors(state, tmp_path / "one.safetensors", meta)
    write_safetensors(dict(reversed(list(state.items()))), tmp_path / "two.safetensors",
                      dict(reversed(list(meta.items()))))
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    back = read_safetensors(tmp_path / "one.safetensors")
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    with safe_open(str(tmp_path / "one.safetensors"), "pt") as f:
        assert f.metadata() == meta
    header_len = int.from_bytes((tmp_path / "one.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "one.safetensors").read_bytes()[8:8 + header_len])
    assert list(header) == sorted(header) and list(header["__metadata__"]) == sorted(meta)
