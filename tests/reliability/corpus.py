"""A generated corpus of malformed inputs and bad flags for every reader, command and the config layer.

Each :class:`Case` is one ``contrast3d`` command line that must end as SPEC §10 promises: exit code
2, exactly one line on stderr that names the offending file or flag (``token``), no traceback, no
hang. :func:`build_corpus` writes the malformed files under ``base`` and returns the cases;
:func:`run_case` runs one through :func:`contrast3d.cli.main` in-process and classifies it
(``good``, ``traceback``, ``silent-wrong`` (exit 0), ``wrong-exit``, ``noisy`` (more than one
stderr line or the token missing) or ``hang``).

Inputs come from :mod:`tiny_data` (``fx``: a dict of fixture paths: ``scenes``, ``pairs``,
``seq``, ``backbone``, ``poisoned``, ``run``).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tiny_data as T
from PIL import Image

TIMEOUT_S = 30


@dataclass
class Case:
    """One bad command line: ``argv`` for :func:`contrast3d.cli.main`; ``token`` must appear in the error
    line; ``setup`` (optional) prepares inputs that need the session fixtures (run before the case)."""

    id: str
    argv: list[str]
    token: str
    group: str = ""
    setup: Callable[[], None] | None = None


@dataclass
class Outcome:
    case: Case
    code: int | None
    out: str
    err: str
    verdict: str
    lines: list[str] = field(default_factory=list)


class _Hang(Exception):
    pass


def run_case(case: Case, timeout: int = TIMEOUT_S) -> Outcome:
    """Run ``case`` in-process (SIGALRM after ``timeout`` s counts as a hang) and classify it."""
    from contrast3d.cli import main

    def alarm(signum, frame):
        raise _Hang()

    if case.setup is not None:
        case.setup()
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    code: int | None = None
    hung = crashed = False
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case.argv)
            except SystemExit as exc:  # main must not let it out, but classify it if it does
                code = exc.code if isinstance(exc.code, int) else 1
                err.write(f"{exc.code}\n" if not isinstance(exc.code, int) else "")
            except _Hang:
                hung = True
            except Exception:  # noqa: BLE001 - a traceback is exactly what this corpus looks for
                import traceback

                crashed = True
                err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if hung:
        verdict = "hang"
    elif crashed or "Traceback" in text or "Traceback" in out.getvalue():
        verdict = "traceback"
    elif code == 0:
        verdict = "silent-wrong"
    elif code != 2:
        verdict = "wrong-exit"
    elif len(lines) != 1 or case.token not in lines[0]:
        verdict = "noisy"
    else:
        verdict = "good"
    return Outcome(case, code, out.getvalue(), text, verdict, lines)


# ----------------------------------------------------------------------------- file makers
class Files:
    """Writes malformed files under ``base`` (one sub-folder per case group)."""

    def __init__(self, base: Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)

    def bytes(self, name: str, data: bytes) -> str:
        p = self.base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return str(p)

    def text(self, name: str, text: str) -> str:
        return self.bytes(name, text.encode())

    def fifo(self, name: str) -> str:
        p = self.base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            os.mkfifo(p)
        return str(p)

    def dir(self, name: str) -> Path:
        p = self.base / name
        p.mkdir(parents=True, exist_ok=True)
        return p


def _ply_ascii(n: int = 3, body: str | None = None, props: str = "property float x\nproperty float y\n"
               "property float z\n", faces: str = "") -> str:
    rows = body if body is not None else "".join(f"{i} {i * 0.5} 1\n" for i in range(n))
    return f"ply\nformat ascii 1.0\nelement vertex {n}\n{props}{faces}end_header\n{rows}"


def _ply_binary(n: int, cut: int = 0) -> bytes:
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\nproperty float y\n"
            f"property float z\nend_header\n").encode()
    body = np.arange(3 * n, dtype="<f4").tobytes()
    return head + (body[:-cut] if cut else body)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _scene(files: Files, name: str, n: int = 50, **arrays: np.ndarray | bytes | None) -> str:
    """A Pointcept scene folder: a good ``coord`` (unless given) plus the given arrays / raw bytes."""
    d = files.dir(name)
    rng = np.random.default_rng(0)
    base: dict[str, np.ndarray | bytes | None] = {"coord": rng.random((n, 3)).astype(np.float32)}
    base.update(arrays)
    for key, value in base.items():
        if value is None:
            continue
        (d / f"{key}.npy").write_bytes(value if isinstance(value, bytes) else _npy(value))
    return str(d)


# ----------------------------------------------------------------------------- the corpus
def reader_cases(f: Files) -> list[Case]:
    """Malformed files for every reader, fed to ``convert`` (and to ``prepare scenes`` / ``viz`` below)."""
    out = f.base / "out"
    out.mkdir(exist_ok=True)
    cases: list[Case] = []

    def add(cid: str, path: str, token: str | None = None) -> None:
        cases.append(Case(f"read-{cid}", ["convert", path, str(out / f"{cid}.ply")], token or path, "readers"))

    # PLY
    add("ply-empty", f.bytes("ply/empty.ply", b""))
    add("ply-garbage", f.bytes("ply/garbage.ply", os.urandom(64)))
    add("ply-not-ply", f.text("ply/notply.ply", "hello world\n"))
    add("ply-no-end-header", f.text("ply/noend.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"))
    add("ply-bad-format", f.text("ply/badfmt.ply", _ply_ascii().replace("ascii 1.0", "utf16 2.0")))
    add("ply-count-mismatch", f.text("ply/count.ply", _ply_ascii(5, body="0 0 0\n1 1 1\n")))
    add("ply-nan", f.text("ply/nan.ply", _ply_ascii(2, body="0 0 0\nnan 1 1\n")))
    add("ply-inf", f.text("ply/inf.ply", _ply_ascii(2, body="0 0 0\n1 inf 1\n")))
    add("ply-non-numeric", f.text("ply/word.ply", _ply_ascii(2, body="0 0 0\n1 one 1\n")))
    add("ply-bad-type", f.text("ply/type.ply", _ply_ascii(1, props="property float x\nproperty float y\n"
                                                          "property quaternion z\n")))
    add("ply-no-x", f.text("ply/nox.ply", _ply_ascii(1, body="0 0\n", props="property float y\nproperty float z\n")))
    add("ply-negative-count", f.text("ply/neg.ply", _ply_ascii(3).replace("vertex 3", "vertex -3")))
    add("ply-huge-count", f.bytes("ply/huge.ply", _ply_binary(2).replace(b"vertex 2", b"vertex 999999999")))
    add("ply-binary-truncated", f.bytes("ply/trunc.ply", _ply_binary(10, cut=7)))
    add("ply-face-out-of-range", f.text("ply/face.ply", _ply_ascii(3, faces="element face 1\nproperty list uchar int "
                                                                   "vertex_indices\n") + "3 0 1 9\n"))
    add("ply-zero-points", f.text("ply/zero.ply", _ply_ascii(0, body="")))
    add("ply-dup-property", f.text("ply/dup.ply", _ply_ascii(1, body="0 0 0 0\n", props="property float x\nproperty "
                                                             "float y\nproperty float z\nproperty float x\n")))
    add("ply-label-float", f.text("ply/lab.ply", _ply_ascii(2, body="0 0 0 0.5\n1 1 1 2\n", props="property float x\n"
                                                            "property float y\nproperty float z\nproperty float "
                                                            "label\n")))
    # OFF / OBJ
    add("off-empty", f.bytes("off/empty.off", b""))
    add("off-bad-header", f.text("off/hdr.off", "COFF?\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"))
    add("off-missing-counts", f.text("off/counts.off", "OFF\n0 0 0\n"))
    add("off-face-range", f.text("off/face.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"))
    add("off-nan", f.text("off/nan.off", "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n"))
    add("off-truncated", f.text("off/trunc.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n"))
    add("obj-bad-vertex", f.text("obj/v.obj", "v 0 0 0\nv 1 zero 0\nv 0 1 0\nf 1 2 3\n"))
    add("obj-face-range", f.text("obj/f.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n"))
    add("obj-empty", f.bytes("obj/empty.obj", b""))
    add("obj-inf", f.text("obj/inf.obj", "v 0 0 0\nv 1 inf 0\nv 0 1 0\nf 1 2 3\n"))
    # SemanticKITTI
    add("kitti-size", f.bytes("kitti/odd.bin", b"\0" * 20))
    add("kitti-empty", f.bytes("kitti/empty.bin", b""))
    add("kitti-nan", f.bytes("kitti/nan.bin", np.array([[0, 0, 0, 1], [np.nan, 0, 0, 1]], "<f4").tobytes()))
    good = np.random.default_rng(1).random((4, 4)).astype("<f4").tobytes()
    path = f.bytes("kitti/lab1.bin", good)
    f.bytes("kitti/lab1.label", b"\0" * 6)
    add("kitti-label-size", path, str(f.base / "kitti" / "lab1.label"))
    path = f.bytes("kitti/lab2.bin", good)
    f.bytes("kitti/lab2.label", b"\0" * 12)
    add("kitti-label-count", path, str(f.base / "kitti" / "lab2.label"))
    # Pointcept scene folders
    n = 50
    add("pc-coord-2d", _scene(f, "pc/c2", coord=np.zeros((n, 2), np.float32)))
    add("pc-coord-1d", _scene(f, "pc/c1", coord=np.zeros(n, np.float32)))
    add("pc-coord-empty", _scene(f, "pc/c0", coord=np.zeros((0, 3), np.float32)))
    add("pc-coord-nan", _scene(f, "pc/cnan", coord=np.full((n, 3), np.nan, np.float32)))
    add("pc-coord-pickle", _scene(f, "pc/cpick", coord=np.array([{"a": 1}], dtype=object)))
    add("pc-coord-string", _scene(f, "pc/cstr", coord=np.array(["a", "b"])))
    add("pc-coord-truncated", _scene(f, "pc/ctrunc", coord=_npy(np.zeros((n, 3), np.float32))[:100]))
    add("pc-coord-garbage", _scene(f, "pc/cgarb", coord=os.urandom(80)))
    add("pc-coord-npz", _scene(f, "pc/cnpz", coord=b"PK\x03\x04" + os.urandom(60)))
    add("pc-color-length", _scene(f, "pc/col", color=np.zeros((n - 1, 3), np.uint8)))
    add("pc-color-shape", _scene(f, "pc/cols", color=np.zeros((n, 4), np.uint8)))
    add("pc-color-nan", _scene(f, "pc/colnan", color=np.full((n, 3), np.nan, np.float32)))
    add("pc-normal-inf", _scene(f, "pc/norm", normal=np.full((n, 3), np.inf, np.float32)))
    add("pc-segment-float", _scene(f, "pc/segf", segment=np.full(n, 0.5)))
    add("pc-segment-length", _scene(f, "pc/segl", segment20=np.zeros(n + 3, np.int64)))
    add("pc-segment-2d", _scene(f, "pc/seg2", segment=np.zeros((n, 2), np.int64)))
    add("pc-instance-nan", _scene(f, "pc/inst", instance=np.full(n, np.nan)))
    add("pc-extra-length", _scene(f, "pc/extra", strength=np.zeros(n + 1, np.float32)))
    add("pc-superpoint-string", _scene(f, "pc/sp", superpoint=np.array(["x"] * n)))
    add("pc-color-1e6", _scene(f, "pc/colbig", color=np.full((n, 3), 2.0e8, np.float32)))
    add("pc-color-negative", _scene(f, "pc/colneg", color=np.full((n, 3), -40.0, np.float32)))
    # ScanNet raw scan folders
    mesh = _ply_ascii(3)
    for cid, extra in (("labels-count", {"_vh_clean_2.labels.ply": _ply_ascii(2)}),
                       ("labels-nolabel", {"_vh_clean_2.labels.ply": mesh}),
                       ("segs-invalid", {"_vh_clean_2.0.010000.segs.json": "{not json"}),
                       ("segs-latin1", {"_vh_clean_2.0.010000.segs.json": b"{\"segIndices\": [\xff]}"}),
                       ("segs-length", {"_vh_clean_2.0.010000.segs.json": json.dumps({"segIndices": [0, 1]})}),
                       ("segs-negative", {"_vh_clean_2.0.010000.segs.json": json.dumps({"segIndices": [0, -1, 2]})}),
                       ("agg-groups", {"_vh_clean_2.0.010000.segs.json": json.dumps({"segIndices": [0, 1, 2]}),
                                       ".aggregation.json": json.dumps({"segGroups": [{"label": "chair"}]})})):
        d = f.dir(f"scannet/{cid}/scene0000_00")
        (d / "scene0000_00_vh_clean_2.ply").write_text(mesh)
        bad = None
        for suffix, content in extra.items():
            p = d / f"scene0000_00{suffix}"
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
            bad = p
        add(f"scannet-{cid}", str(d), str(bad))
    # S3DIS rooms
    for cid, text in (("bad-row", "0 0 0 1 2 3\n1 1 one 1 2 3\n"), ("columns", "0 0 0 1 2\n"),
                      ("nan", "0 0 0 1 2 3\nnan 1 1 1 2 3\n"), ("color-range", "0 0 0 1 2 300\n"),
                      ("empty", "")):
        d = f.dir(f"s3dis/{cid}/Annotations")
        (d / "chair_1.txt").write_text(text)
        add(f"s3dis-{cid}", str(d.parent), str(d.parent) if cid == "empty" else str(d / "chair_1.txt"))
    # anything else
    add("missing-file", str(f.base / "nope" / "missing.ply"))
    add("unsupported-ext", f.text("misc/scan.xyz", "0 0 0\n"))
    add("empty-folder", str(f.dir("misc/emptydir")))
    add("fifo-ply", f.fifo("misc/pipe.ply"))
    add("fifo-npy", _fifo_scene(f))
    add("dangling-symlink", _symlink(f, "misc/link.ply", f.base / "misc" / "gone.ply"))
    return cases


def _fifo_scene(f: Files) -> str:
    d = f.dir("misc/fifo_scene")
    if not (d / "coord.npy").exists():
        os.mkfifo(d / "coord.npy")
    return str(d)


def _symlink(f: Files, name: str, target: Path) -> str:
    p = f.base / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.is_symlink():
        p.symlink_to(target)
    return str(p)


def convert_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    scene = str(fx["scenes"] / "scene0")
    existing = f.text("convert/existing.txt", "keep me\n")
    outdir = f.dir("convert/outdir")
    (outdir / "notes.txt").write_text("not a scene\n")
    return [
        Case("convert-ascii-pointcept", ["convert", scene, str(f.base / "convert" / "o1"), "--ascii"], "--ascii"),
        Case("convert-out-existing-file", ["convert", scene, existing, "--to", "pointcept"], existing),
        Case("convert-out-non-scene-folder", ["convert", scene, str(outdir)], str(outdir)),
        Case("convert-out-under-file", ["convert", scene, existing + "/x.ply"], existing),
        Case("convert-out-is-dir-ply", ["convert", scene, str(f.dir("convert/d.ply"))], "d.ply"),
        Case("convert-bad-to", ["convert", scene, "x.ply", "--to", "las"], "--to"),
        Case("convert-missing-output", ["convert", scene], "OUTPUT"),
    ]


def _bad_sequences(f: Files) -> dict[str, tuple[Path, str]]:
    """RGB-D sequences that are wrong in one way each: ``{name: (folder, token)}``."""
    seqs: dict[str, tuple[Path, str]] = {}
    root = f.base / "rgbd"

    def seq(name: str, **kw) -> Path:
        d = root / name / "seq"
        if not d.exists():
            T.rgbd_sequence(d, frames=2, **kw)
        return d

    d = seq("depth8", depth_bits=8)
    seqs["depth-8bit"] = (d, str(d))
    k = T.K.copy()
    k[0, 2] = 500.0
    d = seq("pp", k=k)
    seqs["principal-point-outside"] = (d, str(d / "intrinsic" / "intrinsic_depth.txt"))
    d = seq("small")
    k4 = np.eye(4)
    k4[:3, :3] = T.K * np.array([[2.0], [2.0], [1.0]])  # intrinsics of an image twice the size
    np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", k4)
    seqs["depth-smaller-than-intrinsics"] = (d, str(d))
    d = seq("kbad")
    (d / "intrinsic" / "intrinsic_depth.txt").write_text("fx fy\n")
    seqs["intrinsics-unparsable"] = (d, str(d / "intrinsic" / "intrinsic_depth.txt"))
    d = seq("kbin")
    (d / "intrinsic" / "intrinsic_depth.txt").write_bytes(b"\xff\xfe\x00\x01" * 8)
    seqs["intrinsics-binary"] = (d, str(d / "intrinsic" / "intrinsic_depth.txt"))
    d = seq("kdir")
    (d / "intrinsic" / "intrinsic_depth.txt").unlink()
    (d / "intrinsic" / "intrinsic_depth.txt").mkdir()
    seqs["intrinsics-directory"] = (d, str(d / "intrinsic" / "intrinsic_depth.txt"))
    d = seq("kfifo")
    (d / "intrinsic" / "intrinsic_depth.txt").unlink()
    os.mkfifo(d / "intrinsic" / "intrinsic_depth.txt")
    seqs["intrinsics-fifo"] = (d, str(d / "intrinsic" / "intrinsic_depth.txt"))
    d = seq("zero")
    for p in (d / "depth").glob("*.png"):
        Image.fromarray(np.zeros((T.H, T.W), np.uint16)).save(p)
    seqs["depth-all-zero"] = (d, str(d))
    d = seq("pose")
    for p in (d / "pose").glob("*.txt"):
        p.write_text("1 0 0 0\n0 1 0 0\n0 0 0 0\n0 0 0 1\n")
    seqs["pose-singular"] = (d, str(d))
    d = seq("posenan")
    for p in (d / "pose").glob("*.txt"):
        p.write_text("-inf -inf -inf -inf\n" * 4)
    seqs["pose-inf"] = (d, str(d))
    d = seq("nopose")
    for p in (d / "pose").glob("*.txt"):
        p.unlink()
    seqs["pose-missing"] = (d, str(d))
    d = seq("garbled")
    for p in (d / "depth").glob("*.png"):
        p.write_bytes(b"\x89PNG\r\n" + os.urandom(40))
    seqs["depth-garbled"] = (d, str(d))
    d = seq("rgbdepth")
    for p in (d / "depth").glob("*.png"):
        Image.fromarray(np.full((T.H, T.W, 3), 9, np.uint8)).save(p)
    seqs["depth-rgb"] = (d, str(d))
    # 7-Scenes layout: an 8-bit depth image, unparsable camera intrinsics
    for name in ("7s-depth8", "7s-intrinsics"):
        d = root / name / "seq"
        if not d.exists():
            d.mkdir(parents=True)
            pose = T.camera_pose(0.5)
            depth = np.round(T.render_depth(pose) * 1000.0)
            depth = np.clip(depth / 20.0, 1, 255).astype(np.uint8) if name == "7s-depth8" else depth.astype(np.uint16)
            Image.fromarray(depth).save(d / "frame-000000.depth.png")
            Image.fromarray(np.full((T.H, T.W, 3), 128, np.uint8)).save(d / "frame-000000.color.png")
            np.savetxt(d / "frame-000000.pose.txt", pose)
            (d / "frame-000000.color.png").rename(d / "frame-000000.color.jpg")
            if name == "7s-intrinsics":
                (d / "camera-intrinsics.txt").write_text("585 0 320\n0 585\n")
            else:
                np.savetxt(d / "camera-intrinsics.txt", T.K)
        seqs[name] = (d, str(d / "camera-intrinsics.txt") if name == "7s-intrinsics" else str(d))
    # Redwood layout: a non-UTF-8 json, an unreadable json, intrinsics of an image twice the depth's size
    big = json.dumps({"width": 2 * T.W, "height": 2 * T.H, "intrinsic_matrix": [56.0, 0, 0, 0, 56.0, 0, 47.5, 35.5, 1]})
    for name, payload in (("log-latin1", b"{\"intrinsic_matrix\": \"\xe9\"}"),
                          ("log-badjson", b"{\"intrinsic_matrix\": [1,"), ("log-size", big.encode())):
        d = root / name / "seq"
        if not d.exists():
            (d / "depth").mkdir(parents=True)
            Image.fromarray(np.full((T.H, T.W), 1500, np.uint16)).save(d / "depth" / "00000.png")
            (d / "traj.log").write_text("0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
            (d / "camera.json").write_bytes(payload)
        seqs[name] = (d, str(d / "camera.json") if name != "log-size" else str(d))
    return seqs


def prepare_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    seq = str(fx["seq"])
    out = str(f.base / "prep_out")
    existing = f.text("prep/existing_file", "x\n")
    cases = [
        Case("prep-frame-skip-0", ["prepare", "rgbd", "--frames", seq, "--out", out, "--frame-skip", "0"],
             "--frame-skip"),
        Case("prep-voxel-0", ["prepare", "rgbd", "--frames", seq, "--out", out, "--voxel-size", "0"], "--voxel-size"),
        Case("prep-voxel-neg", ["prepare", "rgbd", "--frames", seq, "--out", out, "--voxel-size", "-0.1"],
             "--voxel-size"),
        Case("prep-voxel-nan", ["prepare", "rgbd", "--frames", seq, "--out", out, "--voxel-size", "nan"],
             "--voxel-size"),
        Case("prep-depth-trunc-neg", ["prepare", "rgbd", "--frames", seq, "--out", out, "--depth-trunc", "-3"],
             "--depth-trunc"),
        Case("prep-min-overlap-5", ["prepare", "rgbd", "--frames", seq, "--out", out, "--min-overlap", "5"],
             "--min-overlap"),
        Case("prep-min-overlap-neg", ["prepare", "rgbd", "--frames", seq, "--out", out, "--min-overlap", "-0.2"],
             "--min-overlap"),
        Case("prep-workers-0", ["prepare", "rgbd", "--frames", seq, "--out", out, "--workers", "0"], "--workers"),
        Case("prep-workers-word", ["prepare", "rgbd", "--frames", seq, "--out", out, "--workers", "two"], "--workers"),
        Case("prep-frames-missing", ["prepare", "rgbd", "--frames", str(f.base / "nope"), "--out", out],
             str(f.base / "nope")),
        Case("prep-frames-is-file", ["prepare", "rgbd", "--frames", existing, "--out", out], existing),
        Case("prep-frames-no-sequence", ["prepare", "rgbd", "--frames", str(f.dir("prep/noseq")), "--out", out],
             "noseq"),
        Case("prep-out-existing-file", ["prepare", "rgbd", "--frames", seq, "--out", existing], existing),
        Case("prep-no-frames-flag", ["prepare", "rgbd", "--out", out], "--frames"),
        Case("prep-scenes-out-existing-file", ["prepare", "scenes", "--input", str(fx["scenes"] / "scene0"),
                                               "--out", existing], existing),
        Case("prep-scenes-all-bad", ["prepare", "scenes", "--input", f.bytes("prep/bad.ply", b"ply\n"),
                                     "--out", str(f.base / "prep_scenes_out")], "bad.ply"),
        Case("prep-scenes-strict", ["prepare", "scenes", "--input", f.bytes("prep/bad2.ply", b"\0\0"),
                                    "--out", str(f.base / "prep_scenes_out2"), "--strict"], "bad2.ply"),
        Case("prep-scenes-fifo", ["prepare", "scenes", "--input", f.fifo("prep/pipe.ply"),
                                  "--out", str(f.base / "prep_scenes_out3")], "pipe.ply"),
        Case("prep-scenes-workers-neg", ["prepare", "scenes", "--input", seq, "--out", out, "--workers", "-1"],
             "--workers"),
    ]
    for name, (d, token) in _bad_sequences(f).items():
        cases.append(Case(f"prep-rgbd-{name}", ["prepare", "rgbd", "--frames", str(d), "--out",
                                                str(f.base / "prep_rgbd" / name), "--frame-skip", "1"], token))
    return cases


def config_files(f: Files) -> dict[str, tuple[str, str]]:
    """Bad ``--config`` files: ``{name: (path, token)}``."""
    def one(name: str, data: bytes) -> tuple[str, str]:
        p = f.bytes(f"config/{name}", data)
        return p, p

    cfgs = {
        "binary": one("binary.yaml", bytes(range(256))),
        "latin1": one("latin1.yaml", b"steps: 10 # caf\xe9\n"),
        "invalid-yaml": one("invalid.yaml", b"steps: [1, 2\n"),
        "top-list": one("list.yaml", b"- 1\n- 2\n"),
        "top-scalar": one("scalar.yaml", b"42\n"),
        "unknown-key": one("unknown.yaml", b"stepz: 10\n"),
        "wrong-type": one("type.yaml", b"steps: ten\n"),
        "nested-unknown": one("nested.yaml", b"optim:\n  lrr: 0.1\n"),
        "negative-lr": one("neglr.yaml", b"optim:\n  lr: -1\n"),
        "section-scalar": one("section.yaml", b"optim: 3\n"),
        "tabs": one("tabs.yaml", b"optim:\n\tlr: 0.1\n"),
        "steps-negative": one("negsteps.yaml", b"steps: -5\n"),
    }
    d = f.dir("config/dir.yaml")
    cfgs["directory"] = (str(d), str(d))
    cfgs["fifo"] = (f.fifo("config/pipe.yaml"),) * 2
    cfgs["dangling"] = (_symlink(f, "config/link.yaml", f.base / "config" / "gone.yaml"),) * 2
    p = f.text("config/plainfile", "x")
    cfgs["under-file"] = (p + "/c.yaml", p)
    cfgs["missing"] = (str(f.base / "config" / "missing.yaml"),) * 2
    return cfgs


def _bad_prepared(f: Files) -> dict[str, tuple[str, str]]:
    """Prepared frame-pair datasets of one scene and one pair, broken in one way each: ``{name: (root, token)}``."""
    out: dict[str, tuple[str, str]] = {}

    def scene(name: str) -> Path:
        root = f.base / "prepared" / name
        if not root.exists():
            T.prepared_pairs(root, scenes=1, frames=2, points=200)
        return root / "scene0"

    d = scene("garbled-frame")
    (d / "frames" / "000001.npz").write_bytes(b"PK\x03\x04" + bytes(40))
    out["garbled-frame"] = (str(d.parent), str(d / "frames" / "000001.npz"))
    d = scene("fifo-frame")
    if not (d / "frames" / "000001.npz").is_fifo():
        (d / "frames" / "000001.npz").unlink()
        os.mkfifo(d / "frames" / "000001.npz")
    out["fifo-frame"] = (str(d.parent), str(d / "frames" / "000001.npz"))
    d = scene("frame-no-coord")
    np.savez(d / "frames" / "000001.npz", color=np.zeros((5, 3), np.float32))
    out["frame-no-coord"] = (str(d.parent), str(d / "frames" / "000001.npz"))
    d = scene("frame-nan")
    np.savez(d / "frames" / "000001.npz", coord=np.full((5, 3), np.nan, np.float32))
    out["frame-nan"] = (str(d.parent), str(d / "frames" / "000001.npz"))
    d = scene("pairs-latin1")
    (d / "pairs.txt").write_bytes(b"000000 000001 0.5 caf\xe9\n")
    out["pairs-latin1"] = (str(d.parent), str(d / "pairs.txt"))
    d = scene("pairs-unknown-frame")
    (d / "pairs.txt").write_text("000000 000009 0.5\n")
    out["pairs-unknown-frame"] = (str(d.parent), str(d / "pairs.txt"))
    d = scene("scene-json-latin1")
    (d / "scene.json").write_bytes(b"{\"format\": \"caf\xe9\"}")
    out["scene-json-latin1"] = (str(d.parent), str(d / "scene.json"))
    d = scene("frame-missing")
    (d / "frames" / "000001.npz").unlink()
    out["frame-missing"] = (str(d.parent), str(d / "frames"))
    return out


def pretrain_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    data, runs = str(fx["pairs"]), f.base / "pretrain_runs"
    base = ["pretrain", "pointcontrast", "--data", data, "--device", "cpu", "--no-progress",
            "--set", "loader.num_workers=0", "--set", "loader.batch_size=1", "--set", "model.preset=spunet-tiny"]
    cases: list[Case] = []

    def add(cid: str, extra: list[str], token: str, argv: list[str] | None = None) -> None:
        cases.append(Case(f"pretrain-{cid}", (argv or base) + ["--out", str(runs / cid)] + extra, token, "pretrain"))

    add("steps-negative", ["--steps", "-5"], "--steps")
    add("steps-zero", ["--steps", "0"], "--steps")
    add("steps-word", ["--steps", "many"], "--steps")
    add("probe-every-zero", ["--probe-data", str(fx["scenes"]), "--probe-every", "0"], "--probe-every")
    add("probe-data-missing", ["--probe-data", str(f.base / "noprobe")], "noprobe")
    add("unknown-method", [], "pointcontrst", ["pretrain", "pointcontrst", "--data", data])
    add("no-method", [], "METHOD", ["pretrain", "--data", data])
    add("data-missing", [], str(f.base / "nodata"), ["pretrain", "pointcontrast", "--data", str(f.base / "nodata")])
    add("data-empty", [], "emptydata", ["pretrain", "pointcontrast", "--data", str(f.dir("emptydata")),
                                        "--device", "cpu"])
    add("data-is-file", [], "plainfile", ["pretrain", "pointcontrast", "--data", f.text("plainfile", "x")])
    add("no-data", [], "--data", ["pretrain", "pointcontrast"])
    add("device-bogus", ["--device", "tpu"], "--device")
    for cid, (path, token) in _bad_prepared(f).items():
        add(f"prepared-{cid}", ["--strict" if len(cid) % 2 else "--set=data.strict=true", "--steps", "2"], token,
            ["pretrain", "pointcontrast", "--data", path] + base[4:])
    existing = f.text("pretrain/existing", "x")
    cases.append(Case("pretrain-out-existing-file", base + ["--out", existing], existing, "pretrain"))
    for name, (path, token) in config_files(f).items():
        add(f"config-{name}", ["--config", path], token)
    add("config-unknown-preset", ["--config", "pointcontrast_gpu_huge"], "pointcontrast_gpu_huge")
    for cid, text, token in (("no-equals", "optim.lr", "optim.lr"), ("empty-key", "=3", "=3"),
                             ("unknown-key", "optim.lrr=0.1", "optim.lrr"), ("unknown-section", "optimizer.lr=1",
                                                                              "optimizer"),
                             ("lr-negative", "optim.lr=-1", "optim.lr"), ("lr-zero", "optim.lr=0", "optim.lr"),
                             ("lr-word", "optim.lr=fast", "optim.lr"), ("lr-nan", "optim.lr=.nan", "optim.lr"),
                             ("lr-inf", "optim.lr=.inf", "optim.lr"),
                             ("batch-zero", "loader.batch_size=0", "loader.batch_size"),
                             ("workers-neg", "loader.num_workers=-1", "loader.num_workers"),
                             ("steps-neg", "steps=-5", "steps"), ("log-every-zero", "log_every=0", "log_every"),
                             ("checkpoint-neg", "checkpoint_every=-1", "checkpoint_every"),
                             ("keep-neg", "keep_every=-2", "keep_every"),
                             ("grid-zero", "data.grid_size=0", "data.grid_size"),
                             ("grid-neg", "data.grid_size=-0.05", "data.grid_size"),
                             ("radius-neg", "data.match_radius=-1", "data.match_radius"),
                             ("max-points-neg", "data.max_points=-5", "data.max_points"),
                             ("scale-order", "data.scale=[1.2,0.8]", "data.scale"),
                             ("warmup-neg", "schedule.warmup_steps=-1", "schedule.warmup_steps"),
                             ("schedule-name", "schedule.name=linear", "schedule.name"),
                             ("optim-name", "optim.name=adam", "optim.name"),
                             ("clip-neg", "optim.clip_grad_norm=-1", "optim.clip_grad_norm"),
                             ("preset", "model.preset=spunet9000", "model.preset"),
                             ("in-channels", "model.in_channels=0", "model.in_channels"),
                             ("feat-keys", "data.feat_keys=[colour]", "colour"),
                             ("tau-zero", "method.tau=0", "method.tau"),
                             ("matches-zero", "method.num_matches=0", "method.num_matches"),
                             ("loss-name", "method.loss=triplet", "method.loss"),
                             ("seed-word", "seed=abc", "seed"),
                             ("momentum-neg", "optim.momentum=-0.5", "optim.momentum"),
                             ("weight-decay-neg", "optim.weight_decay=-1", "optim.weight_decay")):
        add(f"set-{cid}", ["--set", text], token)
    return cases


def _copy_run(run: Path, dst: Path, mutate: Callable[[Path], None] | None = None) -> Callable[[], None]:
    """A setup that copies the finished reference run to ``dst`` (once) and applies ``mutate(dst)``."""
    def setup() -> None:
        if not dst.exists():
            shutil.copytree(run, dst)
            if mutate is not None:
                mutate(dst)

    return setup


def resume_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    """``--resume`` of a finished 2-step run with changes that cannot apply, and broken checkpoints."""
    run = fx["run"]
    cases = []
    for cid, text, token in (("preset", "model.preset=spunet18", "model.preset"),
                             ("seed", "seed=5", "seed"), ("batch", "loader.batch_size=3", "loader.batch_size"),
                             ("optim", "optim.name=adamw", "optim.name"),
                             ("steps-below", "steps=1", "steps")):
        d = f.base / "resume" / cid
        cases.append(Case(f"resume-{cid}", ["pretrain", "pointcontrast", "--out", str(d), "--resume", "--device",
                                            "cpu", "--no-progress", "--set", text], token, "resume",
                          _copy_run(run, d)))
    for cid, mutate in (("truncated", lambda p: p.write_bytes(p.read_bytes()[:2000])),
                        ("garbage", lambda p: p.write_bytes(os.urandom(500))),
                        ("empty", lambda p: p.write_bytes(b""))):
        d = f.base / "resume" / f"ckpt-{cid}"
        cases.append(Case(f"resume-ckpt-{cid}", ["pretrain", "pointcontrast", "--out", str(d), "--resume",
                                                 "--device", "cpu", "--no-progress", "--steps", "4"],
                          str(d / "checkpoints" / "last.pt"), "resume",
                          _copy_run(run, d, lambda d, m=mutate: m(d / "checkpoints" / "last.pt"))))
    d = f.base / "resume" / "config-broken"
    cases.append(Case("resume-config-broken", ["pretrain", "pointcontrast", "--out", str(d), "--resume"],
                      str(d / "config.yaml"), "resume",
                      _copy_run(run, d, lambda d: (d / "config.yaml").write_bytes(b"steps: [\n"))))
    d = f.base / "resume" / "other-method"
    cases.append(Case("resume-other-method", ["pretrain", "fac", "--out", str(d), "--resume", "--device", "cpu"],
                      "pointcontrast", "resume", _copy_run(run, d)))
    cases.append(Case("resume-existing-checkpoint", ["pretrain", "pointcontrast", "--data", str(fx["pairs"]),
                                                     "--out", str(run), *T.TINY_PRETRAIN],
                      str(run / "checkpoints" / "last.pt"), "resume"))
    return cases


def finetune_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    data, runs = str(fx["scenes"]), f.base / "ft_runs"
    unlabelled = f.base / "unlabelled"
    if not unlabelled.exists():
        T.pointcept_scenes(unlabelled, count=3, points=200)
        for p in unlabelled.glob("*/segment20.npy"):
            p.unlink()
    base = ["finetune", "semseg", "--data", data, "--init", "scratch", "--config", "semseg_cpu_small",
            "--device", "cpu", "--no-progress", "--set", "loader.num_workers=0", "--set", "model.preset=spunet-tiny"]
    cases: list[Case] = []

    def add(cid: str, extra: list[str], token: str, argv: list[str] | None = None) -> None:
        cases.append(Case(f"finetune-{cid}", (argv or base) + ["--out", str(runs / cid)] + extra, token, "finetune"))

    for cid, labels in (("0pts", "0pts"), ("0pct", "0%"), ("150pct", "150%"), ("word", "plenty"),
                        ("neg", "-5pts"), ("selection", "20pts:best")):
        add(f"labels-{cid}", ["--labels", labels], "--labels")
    add("steps-neg", ["--steps", "-1"], "--steps")
    add("steps-zero", ["--steps", "0"], "--steps")
    add("eval-every-neg", ["--eval-every", "-1"], "--eval-every")
    add("init-missing", [], "nowhere.safetensors", ["finetune", "semseg", "--data", data, "--init",
                                                    str(f.base / "nowhere.safetensors")])
    add("init-poisoned", [], str(fx["poisoned"]), ["finetune", "semseg", "--data", data, "--init", str(fx["poisoned"]),
                                                   "--config", "semseg_cpu_small", "--set",
                                                   "model.preset=spunet-tiny", "--device", "cpu"])
    add("init-garbage", [], "garbage.pt", ["finetune", "semseg", "--data", data, "--init",
                                           f.bytes("garbage.pt", os.urandom(100))])
    add("init-directory", [], "initdir", ["finetune", "semseg", "--data", data, "--init", str(f.dir("initdir"))])
    add("init-fifo", [], "initpipe.pt", ["finetune", "semseg", "--data", data, "--init", f.fifo("initpipe.pt")])
    add("no-init", [], "--init", ["finetune", "semseg", "--data", data])
    add("no-data", [], "--data", ["finetune", "semseg", "--init", "scratch"])
    add("data-missing", [], "ftnodata", ["finetune", "semseg", "--init", "scratch", "--data",
                                         str(f.base / "ftnodata")])
    add("data-unlabelled", [], str(unlabelled), base[:2] + ["--data", str(unlabelled)] + base[4:])
    add("device-cuda", ["--device", "cuda"], "cuda")
    add("num-classes-small", ["--set", "model.num_classes=2"], "num_classes")
    add("grid-zero", ["--set", "data.grid_size=0"], "data.grid_size")
    add("config-binary", ["--config", config_files(f)["binary"][0]], config_files(f)["binary"][1])
    existing = f.text("ft_existing", "x")
    cases.append(Case("finetune-out-existing-file", base + ["--out", existing], existing, "finetune"))
    add("task-bogus", [], "TASK", ["finetune", "classify", "--data", data])
    return cases


def probe_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    data, init = str(fx["scenes"]), str(fx["backbone"])
    unlabelled = f.base / "unlabelled"
    base = ["probe", "--init", init, "--data", data]
    cases = [
        Case("probe-num-classes-small", base + ["--num-classes", "2"], "--num-classes"),
        Case("probe-num-classes-zero", base + ["--num-classes", "0"], "--num-classes"),
        Case("probe-max-scenes-zero", base + ["--max-scenes", "0"], "--max-scenes"),
        Case("probe-max-scenes-neg", base + ["--max-scenes", "-2"], "--max-scenes"),
        Case("probe-unlabelled", ["probe", "--init", init, "--data", str(unlabelled)], str(unlabelled)),
        Case("probe-poisoned", ["probe", "--init", str(fx["poisoned"]), "--data", data], str(fx["poisoned"])),
        Case("probe-init-missing", ["probe", "--init", str(f.base / "gone.safetensors"), "--data", data],
             "gone.safetensors"),
        Case("probe-init-garbage", ["probe", "--init", f.bytes("probe/g.safetensors", os.urandom(64)),
                                    "--data", data], "g.safetensors"),
        Case("probe-record-garbage", ["probe", "--init", str(f.base / "probe" / "record" / "backbone.safetensors"),
                                      "--data", data], "backbone.json", setup=_broken_record(f, fx)),
        Case("probe-data-missing", ["probe", "--init", init, "--data", str(f.base / "probe_nodata")], "probe_nodata"),
        Case("probe-data-empty", ["probe", "--init", init, "--data", str(f.dir("probe/empty"))], "empty"),
        Case("probe-no-init", ["probe", "--data", data], "--init"),
    ]
    return cases


def _broken_record(f: Files, fx: dict[str, Path]) -> Callable[[], None]:
    """A setup: the good export beside a record that is not UTF-8 JSON."""
    def setup() -> None:
        d = f.dir("probe/record")
        shutil.copy(fx["backbone"], d / "backbone.safetensors")
        (d / "backbone.json").write_bytes(b"{\"format\": \xff")

    return setup


def viz_cases(f: Files, fx: dict[str, Path]) -> list[Case]:
    init, scene = str(fx["backbone"]), str(fx["scenes"] / "scene0")
    png = str(f.base / "viz" / "out.png")
    (f.base / "viz").mkdir(parents=True, exist_ok=True)
    unlabelled = str(f.base / "unlabelled" / "scene0")
    sim = ["viz", "similarity", "--init", init, "--scene", scene, "--out", png]
    tsne = ["viz", "tsne", "--init", init, "--scene", scene, "--out", png]
    metrics = f.base / "viz" / "run"
    metrics.mkdir(exist_ok=True)
    (metrics / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n"
                                                   for i in range(5)))
    curves = ["viz", "curves", str(metrics), "--out", png]
    return [
        Case("viz-cmap-bogus", sim + ["--cmap", "rainbow-unicorn"], "--cmap"),
        Case("viz-grid-zero", sim + ["--grid-size", "0"], "--grid-size"),
        Case("viz-grid-neg", sim + ["--grid-size", "-0.1"], "--grid-size"),
        Case("viz-query-neg", sim + ["--query", "-1"], "--query"),
        Case("viz-query-word", sim + ["--query", "middle"], "--query"),
        Case("viz-query-huge", sim + ["--query", "10000000"], "--query"),
        Case("viz-poisoned", ["viz", "similarity", "--init", str(fx["poisoned"]), "--scene", scene, "--out", png],
             str(fx["poisoned"])),
        Case("viz-scene-missing", ["viz", "similarity", "--init", init, "--scene", str(f.base / "vnone"),
                                   "--out", png], "vnone"),
        Case("viz-scene-bad", ["viz", "similarity", "--init", init, "--scene",
                               f.bytes("viz/bad.ply", b"ply\nformat ascii 1.0\n"), "--out", png], "bad.ply"),
        Case("viz-out-dir", ["viz", "similarity", "--init", init, "--scene", scene, "--out",
                             str(f.dir("viz/outdir.png"))], "outdir.png"),
        Case("viz-out-under-file", sim[:-2] + ["--out", f.text("viz/file", "x") + "/o.png"], "viz/file"),
        Case("viz-device-cuda", sim + ["--device", "cuda"], "cuda"),
        Case("viz-device-bogus", sim + ["--device", "quantum"], "--device"),
        Case("viz-tsne-max-points-zero", tsne + ["--max-points", "0"], "--max-points"),
        Case("viz-tsne-max-points-neg", tsne + ["--max-points", "-5"], "--max-points"),
        Case("viz-tsne-unlabelled", ["viz", "tsne", "--init", init, "--scene", unlabelled, "--out", png], unlabelled),
        Case("viz-curves-smoothing-neg", curves + ["--smoothing", "-0.5"], "--smoothing"),
        Case("viz-curves-smoothing-one", curves + ["--smoothing", "1"], "--smoothing"),
        Case("viz-curves-missing", ["viz", "curves", str(f.base / "viz" / "norun"), "--out", png], "norun"),
        Case("viz-curves-garbage", ["viz", "curves", f.bytes("viz/m.jsonl", os.urandom(50)), "--out", png],
             "m.jsonl"),
        Case("viz-curves-latin1", ["viz", "curves", f.bytes("viz/l.jsonl", b"{\"step\": 1, \"loss\": \xe9}\n"),
                                   "--out", png], "l.jsonl"),
        Case("viz-curves-dir-log", ["viz", "curves", str(f.dir("viz/d.jsonl")), "--out", png], "d.jsonl"),
        Case("viz-curves-fifo", ["viz", "curves", f.fifo("viz/p.jsonl"), "--out", png], "p.jsonl"),
        Case("viz-curves-unknown-key", curves + ["--keys", "accuracy"], "accuracy"),
        Case("viz-grouping-not-groupcontrast", ["viz", "grouping", "--init", str(fx["run"] / "checkpoints" /
                                                                                  "last.pt"),
                                                "--scene", scene, "--out", png], "last.pt"),
        Case("viz-grouping-grid-zero", ["viz", "grouping", "--init", str(fx["run"] / "checkpoints" / "last.pt"),
                                        "--scene", scene, "--out", png, "--grid-size", "0"], "--grid-size"),
        Case("viz-no-plot-args", ["viz", "similarity", "--init", init], "--scene"),
    ]


def simulate_cases(f: Files) -> list[Case]:
    out = str(f.base / "sim_out")
    existing = f.text("sim_existing", "x")
    return [Case(f"simulate-{cid}", ["simulate", "--out", out, *extra], token, "simulate") for cid, extra, token in (
        ("density-neg", ["--density", "-5"], "--density"), ("density-zero", ["--density", "0"], "--density"),
        ("density-nan", ["--density", "nan"], "--density"), ("scenes-zero", ["--scenes", "0"], "--scenes"),
        ("frames-neg", ["--frames", "-1"], "--frames"), ("width-tiny", ["--width", "4"], "--width"),
        ("workers-zero", ["--workers", "0"], "--workers"), ("scenes-word", ["--scenes", "many"], "--scenes"),
    )] + [Case("simulate-out-existing-file", ["simulate", "--out", existing, "--scenes", "1", "--frames", "0"],
               existing, "simulate")]


def quickstart_cases(f: Files) -> list[Case]:
    out = str(f.base / "qs_out")
    existing = f.text("qs_existing", "x")
    return [Case(f"quickstart-{cid}", ["quickstart", "--out", out, *extra], token, "quickstart")
            for cid, extra, token in (
                ("scenes-zero", ["--scenes", "0"], "--scenes"), ("scenes-one", ["--scenes", "1"], "--scenes"),
                ("pretrain-neg", ["--pretrain-steps", "-1"], "--pretrain-steps"),
                ("finetune-zero", ["--finetune-steps", "0"], "--finetune-steps"),
                ("labels-bogus", ["--labels", "lots"], "--labels"), ("workers-zero", ["--workers", "0"], "--workers"),
                ("out-existing-file", ["--out", existing], existing))]


def top_level_cases() -> list[Case]:
    return [
        Case("cli-unknown-command", ["train"], "train"),
        Case("cli-unknown-flag", ["info", "--verbose"], "--verbose"),
        Case("cli-convert-no-args", ["convert"], "INPUT"),
        Case("cli-prepare-no-kind", ["prepare"], "KIND"),
    ]


def build_corpus(base: Path, fx: dict[str, Path]) -> list[Case]:
    """Every case (files written under ``base``); ids are unique."""
    f = Files(base)
    cases = (reader_cases(f) + convert_cases(f, fx) + prepare_cases(f, fx) + pretrain_cases(f, fx)
             + resume_cases(f, fx) + finetune_cases(f, fx) + probe_cases(f, fx) + viz_cases(f, fx)
             + simulate_cases(f) + quickstart_cases(f) + top_level_cases())
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    for c in cases:
        c.group = c.group or c.id.split("-", 1)[0]
    return cases


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts per verdict (plus ``cases``)."""
    counts = {"cases": len(outcomes)}
    for verdict in ("good", "traceback", "silent-wrong", "hang", "wrong-exit", "noisy"):
        counts[verdict] = sum(o.verdict == verdict for o in outcomes)
    return counts



def main() -> int:
    """``python tests/reliability/corpus.py``: build the inputs, run every case, print the counts (JSON)
    and each case that is not 'good' (the numbers quoted in issue 17's closing note)."""
    import sys

    from contrast3d.cli import main as cli_main

    fx = T.session_paths()
    try:
        T.pointcept_scenes(fx["scenes"])
        T.prepared_pairs(fx["pairs"])
        T.rgbd_sequence(fx["seq"])
        T.backbone(fx["backbone"])
        T.backbone(fx["poisoned"], poison=True)
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli_main(["pretrain", "pointcontrast", "--data", str(fx["pairs"]), "--out", str(fx["run"]),
                             "--steps", "2", *T.TINY_PRETRAIN]) == 0
        outcomes = [run_case(case) for case in build_corpus(fx["root"] / "corpus", fx)]
        for o in outcomes:
            if o.verdict != "good":
                print(f"{o.verdict:12s} {o.case.id}: exit {o.code}: {(o.lines or [''])[-1][:200]}", file=sys.stderr)
        print(json.dumps(summarize(outcomes)))
        return 0 if all(o.verdict == "good" for o in outcomes) else 1
    finally:
        shutil.rmtree(fx["root"], ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
