"""Item 3 of issue 17: a garbled frame file found only while training (in a DataLoader worker) is
skipped and listed in the default mode; ``--strict`` (``data.strict``) stops with one line naming it."""
from __future__ import annotations

import json
import warnings

import tiny_data as T


def _garbled_dataset(tmp_path):
    data = T.prepared_pairs(tmp_path / "pairs", scenes=4, frames=3, points=500)
    bad = data / "scene2" / "frames" / "000001.npz"  # in both pairs of scene2
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 2)
    return data, bad


WORKER = ["--set", "loader.num_workers=1", "--steps", "8"]  # 8 pairs, batch 1: one epoch visits every pair


def test_default_mode_skips_and_lists_the_bad_frame(tmp_path, cli):
    data, bad = _garbled_dataset(tmp_path)
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:  # (the CLI prints each as one 'warning:' line)
        warnings.simplefilter("always")
        code, out, err = cli(["pretrain", "pointcontrast", "--data", data, "--out", run, *T.TINY_PRETRAIN, *WORKER])
    assert code == 0 and "Traceback" not in err + out and not err.strip(), err
    skipped = [str(w.message) for w in caught if "skipping unreadable sample" in str(w.message)]
    assert len(skipped) == 1 and str(bad) in skipped[0]  # once per file, however often it is drawn
    assert f"skipped 1 unreadable sample file(s); listed in {run / 'skipped_samples.json'}" in out
    listed = json.loads((run / "skipped_samples.json").read_text())["skipped"]
    assert [item["source"] for item in listed] == [str(bad)] and "unreadable frame cloud" in listed[0]["reason"]
    assert (run / "backbone.safetensors").is_file()


def test_strict_stops_with_one_line_naming_the_file(tmp_path, cli):
    data, bad = _garbled_dataset(tmp_path)
    run = tmp_path / "strict"
    code, _, err = cli(["pretrain", "pointcontrast", "--data", data, "--out", run, *T.TINY_PRETRAIN, *WORKER,
                        "--strict"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {bad}: unreadable frame cloud")
    assert not (run / "backbone.safetensors").exists()


def test_a_dataset_without_one_readable_sample_stops_on_one_line(tmp_path, cli):
    data = T.prepared_pairs(tmp_path / "pairs", scenes=1, frames=2, points=300)
    bad = data / "scene0" / "frames" / "000000.npz"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = cli(["pretrain", "pointcontrast", "--data", data, "--out", tmp_path / "run", *T.TINY_PRETRAIN,
                        "--steps", "3"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no readable sample" in lines[0] and str(bad) in lines[0], err
