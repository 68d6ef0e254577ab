"""The malformed-input corpus (``corpus.py``): every case exits 2 with one stderr line naming the
offending file or flag, no traceback and no hang (SPEC §10, issue 17).

The corpus is generated at collection time (its files under the session's temporary folder); cases that need
the session's tiny run or backbone prepare themselves through ``Case.setup``; the session fixture
``tiny`` builds those inputs (``tiny_data.session_paths``).
"""
from __future__ import annotations

from collections import Counter

import corpus as C
import pytest
import tiny_data as T

CASES = C.build_corpus(T.session_paths()["root"] / "corpus", T.session_paths())
BY_ID = {c.id: c for c in CASES}


def test_corpus_covers_every_reader_command_and_the_config_layer():
    groups = Counter(c.group for c in CASES)
    assert len(CASES) >= 150, len(CASES)
    for group in ("readers", "convert", "prep", "pretrain", "resume", "finetune", "probe", "viz", "simulate",
                  "quickstart", "cli"):
        assert groups[group] >= 3, (group, groups)
    readers = {c.id.split("-")[1] for c in CASES if c.group == "readers"}
    assert {"ply", "off", "obj", "kitti", "pc", "scannet", "s3dis", "fifo"} <= readers
    assert sum("--config" in c.argv for c in CASES) >= 15 and sum("--set" in c.argv for c in CASES) >= 30


@pytest.mark.parametrize("case_id", list(BY_ID))
def test_bad_input_is_one_line_and_exit_2(case_id, tiny):
    outcome = C.run_case(BY_ID[case_id])
    assert outcome.verdict == "good", (f"{outcome.verdict}: exit {outcome.code}, token {outcome.case.token!r}, "
                                       f"stderr:\n{outcome.err[-3000:]}")
    assert outcome.lines[0].startswith(("error: ", "contrast3d"))


def test_the_runner_detects_tracebacks_noise_and_silent_success(tmp_path, monkeypatch):
    """The classification itself can fail: a good command is 'silent-wrong', a missing token 'noisy',
    an exception escaping ``main`` a 'traceback'."""
    from contrast3d.commands import info

    assert C.run_case(C.Case("ok", ["info", "--json"], "x")).verdict == "silent-wrong"
    wrong_token = C.run_case(C.Case("t", ["convert", str(tmp_path / "none.ply"), str(tmp_path / "o.ply")], "zzz"))
    assert wrong_token.verdict == "noisy" and wrong_token.code == 2
    monkeypatch.setattr(info, "collect", lambda: 1 / 0)
    crash = C.run_case(C.Case("crash", ["info"], "info"))
    assert crash.verdict == "traceback" and "ZeroDivisionError" in crash.err
