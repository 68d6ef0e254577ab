"""``contrast3d viz``: headless PNG checks of a pre-trained backbone and of a run.

* ``viz similarity --init W --scene S [--scene2 S2] [--query INDEX|auto] [--range fixed|unit|auto]
  [--context auto|rgb|labels|none] --out PNG``: cosine similarity of every point's feature to a query
  point, beside the scene's RGB or labels (with ``--scene2``: view 2 coloured by similarity to the
  query of view 1, same camera when both are in world coordinates). ``--range fixed`` (default) keeps
  the colours on [-1, 1], so a collapsed network (every point ~1) is visible and checkpoints compare.
* ``viz tsne --init W --scene S [S ...] [--class-names auto|scannet20|...] --out PNG``: t-SNE of point
  features coloured by class, the legend naming the classes.
* ``viz grouping --init RUN/checkpoints/last.pt --scene S --out PNG``: GroupContrast prototype groups.
* ``viz sequence --scene DIR [--objects DIR] [--seed N] --out PNG``: one 4DContrast scene-object
  sequence, its frames side by side (object highlighted, removed chunks outlined).
* ``viz pixel-point --image-net F --backbone F --frame DIR [--index N] --out PNG``: image2point's
  Fig. 2, one frame's pixel features next to its point features (PCA colours).
* ``viz curves RUN [RUN ...] --out PNG [--label L ...] [--keys k1 k2]``: loss / metric curves of one or
  several runs overlaid (validation points as markers, the final ``results.json`` value starred).
* ``viz instances --model RUN --scene DIR --out PNG [--max-boxes K] [--min-score S]``: a finished
  ``finetune insseg`` run's instances (or a ``finetune det`` run's boxes) on one Pointcept scene, predicted
  exactly as the run's final evaluation does, beside the ground truth from ``instance.npy`` + segment.

``--init`` takes a ``backbone.safetensors`` (with its ``.json`` sidecar) or a training checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from contrast3d.commands._args import (
    colormap,
    float_range,
    fraction,
    output_file,
    positive_float,
    positive_int,
    run_device,
)
from contrast3d.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="PNG checks: feature similarity maps, t-SNE, training curves")
    vs = p.add_subparsers(dest="viz_command", metavar="PLOT")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    s = vs.add_parser("similarity", help="colour a scene by feature similarity to a query point")
    _backbone_args(s)
    s.add_argument("--scene", required=True, help="scene file or folder (anything `contrast3d info` reads)")
    s.add_argument("--scene2", help="second view: coloured by similarity to the query of --scene")
    s.add_argument("--query", default="auto",
                   help="query point index in --scene, or 'auto' (the point nearest the room centre at 30%% height)")
    s.add_argument("--range", dest="value_range", choices=["fixed", "unit", "auto"], default="fixed",
                   help="colour range: fixed = [-1, 1] (default; shows a collapse, compares checkpoints), "
                        "unit = [0, 1], auto = the similarities' min..max")
    s.add_argument("--cmap", type=colormap, help="matplotlib colour map (default RdBu_r for the fixed signed "
                                                 "range, viridis otherwise)")
    s.add_argument("--context", choices=["auto", "rgb", "labels", "none"], default="auto",
                   help="panel beside the similarity map (without --scene2): the scene's colours, its labels or "
                        "none (auto: rgb when the scene has colour, else labels when it has them)")
    _class_names_arg(s)
    s.add_argument("--title", help="figure title (default: scene, query, weights and step)")
    s.add_argument("--out", required=True, help="output PNG")
    s.set_defaults(func=run_similarity)

    t = vs.add_parser("tsne", help="t-SNE of point features coloured by semantic class")
    _backbone_args(t)
    t.add_argument("--scene", required=True, nargs="+", help="labelled scene(s)")
    t.add_argument("--max-points", type=positive_int, default=5000, help="stratified subsample size (default 5000)")
    t.add_argument("--seed", type=int, default=0)
    _class_names_arg(t)
    t.add_argument("--title", help="figure title")
    t.add_argument("--out", required=True, help="output PNG")
    t.set_defaults(func=run_tsne)

    g = vs.add_parser("grouping", help="GroupContrast prototype groups next to segments and labels (paper Fig. 4)")
    g.add_argument("--init", required=True, help="a groupcontrast training checkpoint (RUN/checkpoints/last.pt)")
    g.add_argument("--scene", required=True, help="scene file or folder (superpoints used when present)")
    g.add_argument("--network", choices=["student", "teacher"], default="student")
    g.add_argument("--bn", choices=["running", "batch"], default="running",
                   help="BatchNorm statistics: stored in training (default) or the scene's own (for a scene from "
                        "another domain, e.g. real scans after simulated pre-training)")
    g.add_argument("--device", type=run_device, default="cpu", help="torch device (default cpu)")
    g.add_argument("--grid-size", type=positive_float, help="voxel size in metres (default: the run's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--title", help="figure title")
    g.add_argument("--out", required=True, help="output PNG")
    g.set_defaults(func=run_grouping)

    q = vs.add_parser("sequence", help="one 4DContrast scene-object sequence, frames side by side (moving object "
                                       "highlighted, removed chunks outlined)")
    q.add_argument("--scene", required=True, help="Pointcept scene folder (or a folder of them: the first is used)")
    q.add_argument("--objects", help="folder of OFF/OBJ/PLY objects (default: furniture cut from the scene(s))")
    q.add_argument("--seed", type=int, default=0, help="seeds object, trajectory, chunks and sampling (default 0)")
    q.add_argument("--title", help="figure title")
    q.add_argument("--out", required=True, help="output PNG")
    q.set_defaults(func=run_sequence)

    x = vs.add_parser("pixel-point", help="image2point Fig. 2: one frame's pixel features next to its point "
                                          "features, PCA colours")
    x.add_argument("--image-net", required=True, help="2D network: image2point stage-2d image_net.safetensors "
                                                      "(or its checkpoint)")
    x.add_argument("--backbone", required=True, help="3D network: backbone.safetensors, a Pointcept .pth, or a "
                                                     "stage-3d RUN/checkpoints/last.pt (also supplies the 1x1 head)")
    x.add_argument("--frame", required=True, help="RGB-D frame folder, a folder of them, or a `prepare rgbd` root")
    x.add_argument("--index", type=int, default=0, help="frame index under --frame (default 0)")
    x.add_argument("--projection", choices=["auto", "shared", "separate"], default="auto",
                   help="one PCA for pixels and points or one each (auto: shared when the head is applied)")
    x.add_argument("--center", choices=["each", "joint"], default="each",
                   help="shared PCA: standardise pixels and points each on their own (default) or centre both "
                        "on one mean")
    x.add_argument("--image-size", type=int, help="crop side in pixels (default: the 2D network's record, else 224)")
    x.add_argument("--device", default="cpu", help="torch device (default cpu)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--title", help="figure title")
    x.add_argument("--out", required=True, help="output PNG")
    x.set_defaults(func=run_pixel_point)

    c = vs.add_parser("curves", help="loss and metric curves of one or several runs (overlaid)")
    c.add_argument("run", nargs="+", help="run folder(s) (with metrics.jsonl) or metrics .jsonl file(s)")
    c.add_argument("--label", nargs="+", help="legend name of each run (default: the run folder names)")
    c.add_argument("--title", help="figure title")
    c.add_argument("--keys", nargs="+", help="metrics to plot (default every numeric key)")
    c.add_argument("--smoothing", type=float_range(0.0, 1.0, hi_open=True), default=0.9,
                   help="EMA weight in [0, 1) (default 0.9)")
    c.add_argument("--out", required=True, help="output PNG")
    c.set_defaults(func=run_curves)

    n = vs.add_parser("instances", help="predicted instances (insseg run) or boxes (det run) on a scene beside "
                                        "the ground truth")
    n.add_argument("--model", required=True, help="run folder of 'contrast3d finetune insseg' or 'finetune det'")
    n.add_argument("--scene", required=True, help="Pointcept scene folder (instance.npy + segment: ground truth)")
    n.add_argument("--max-boxes", type=positive_int, default=20,
                   help="det: draw the K best-scoring boxes, one class per box (default 20)")
    n.add_argument("--min-score", type=fraction, default=0.0,
                   help="leave out boxes / instances scoring below S (default 0: all the evaluation keeps)")
    n.add_argument("--device", type=run_device, default="cpu", help="torch device (default cpu)")
    n.add_argument("--title", help="figure title (default: scene, run and task)")
    n.add_argument("--out", required=True, help="output PNG")
    n.set_defaults(func=run_instances)


def _class_names_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class-names", default="auto",
                   help="legend names: auto (the scene's or the weights' names, else ScanNet-20 for ids < 20), "
                        "ids, scannet20, s3dis, semantickitti or a comma-separated list in id order")


def _title_suffix(info: dict) -> str:
    """``"<weights file>, step N"`` (the step when the weights record it)."""
    name = Path(info["path"]).name
    return f"{name}, step {info['step']}" if info.get("step") is not None else name


def _backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", required=True, help="backbone .safetensors (+ .json record), training checkpoint .pt "
                                                 "or Pointcept .pth")
    p.add_argument("--lenient", action="store_true", help="load only the matching tensors of a partial state dict")
    p.add_argument("--device", type=run_device, default="cpu", help="torch device (default cpu)")
    p.add_argument("--grid-size", type=positive_float,
                   help="voxel size in metres (default: from the backbone metadata)")


def _load(args: argparse.Namespace):
    from contrast3d.viz.backbone_io import load_backbone

    model, info = load_backbone(args.init, args.device, lenient=args.lenient)
    if args.grid_size is not None:
        info.update(grid_size=args.grid_size, grid_size_guessed=False)
    elif info["grid_size_guessed"]:
        print(f"warning: {args.init}: no grid_size in the metadata, using {info['grid_size']} m (--grid-size)")
    return model, info


def auto_query(coord: np.ndarray) -> int:
    """The point nearest ``(x, y)`` centre of the bounding box at 30 % of its height (on furniture, not floor)."""
    lo, hi = coord.min(0), coord.max(0)
    target = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] + 0.3 * (hi[2] - lo[2])])
    return int(np.argmin(((coord - target) ** 2).sum(1)))


def run_similarity(args: argparse.Namespace) -> int:
    from contrast3d.viz.backbone_io import read_scene, resolve_class_names, scene_features
    from contrast3d.viz.similarity import similarity_map, similarity_map_pair

    output_file(args.out, suffix=".png")
    resolve_class_names(args.class_names)  # a malformed list fails before the network is loaded
    model, info = _load(args)
    cloud = read_scene(args.scene)
    if args.query == "auto":
        query = auto_query(cloud.coord)
    else:
        try:
            query = int(args.query)
        except ValueError:
            raise DataError(args.query, "--query must be a point index or 'auto'") from None
        if not 0 <= query < len(cloud):
            raise DataError(args.scene, f"--query {query} out of range for {len(cloud)} points")
    context = "none" if args.scene2 else args.context  # the pair figure has no context panel
    if context == "auto":
        context = "rgb" if cloud.color is not None else "labels" if cloud.segment is not None else "none"
    if context == "rgb" and cloud.color is None:
        raise DataError(args.scene, "--context rgb: the scene has no colours")
    if context == "labels" and cloud.segment is None:
        raise DataError(args.scene, "--context labels: the scene has no semantic labels (segment)")
    feats = scene_features(model, cloud, info, args.device)
    scene_name = Path(args.scene).name
    if args.scene2:
        cloud2 = read_scene(args.scene2)
        feats2 = scene_features(model, cloud2, info, args.device)
        title = args.title or f"{scene_name} -> {Path(args.scene2).name}: query {query}; {_title_suffix(info)}"
        _, sim2 = similarity_map_pair(cloud.coord, feats, cloud2.coord, feats2, query, args.out, cmap=args.cmap,
                                      value_range=args.value_range, title=title)
        print(f"wrote {args.out} (query {query}; view-2 similarity {sim2.min():.3f}..{sim2.max():.3f})")
        return 0
    labels = cloud.segment if context == "labels" else None
    names = None
    if labels is not None:
        names, _ = resolve_class_names(args.class_names, labels, cloud.meta.get("class_names"), info["class_names"])
    title = args.title or f"{scene_name}: similarity to point {query}; {_title_suffix(info)}"
    sim = similarity_map(cloud.coord, feats, query, args.out, cmap=args.cmap, value_range=args.value_range,
                         title=title, rgb=cloud.color if context == "rgb" else None, labels=labels,
                         class_names=names)
    print(f"wrote {args.out} (query {query}; similarity {sim.min():.3f}..{sim.max():.3f}, median "
          f"{float(np.median(sim)):.3f})")
    return 0


def run_tsne(args: argparse.Namespace) -> int:
    from contrast3d.viz.backbone_io import read_scene, resolve_class_names, scene_features
    from contrast3d.viz.tsne import tsne_plot

    output_file(args.out, suffix=".png")
    resolve_class_names(args.class_names)  # a malformed list fails before the network is loaded
    model, info = _load(args)
    feats, labels, meta_names = [], [], None
    for path in args.scene:
        cloud = read_scene(path)
        if cloud.segment is None:
            raise DataError(path, "scene has no semantic labels (segment) to colour the t-SNE by")
        feats.append(scene_features(model, cloud, info, args.device).numpy())
        labels.append(cloud.segment)
        meta_names = meta_names or cloud.meta.get("class_names")
    all_feats, all_labels = np.concatenate(feats), np.concatenate(labels)
    class_names, source = resolve_class_names(args.class_names, all_labels, meta_names, info["class_names"])
    where = Path(args.scene[0]).name + (f" +{len(args.scene) - 1}" if len(args.scene) > 1 else "")
    title = args.title or (f"t-SNE of {where}: {min(args.max_points, int((all_labels >= 0).sum()))} points, "
                           f"{all_feats.shape[1]}-d features; {_title_suffix(info)}")
    emb, _ = tsne_plot(all_feats, all_labels, args.out, class_names=class_names, max_points=args.max_points,
                       seed=args.seed, title=title)
    print(f"wrote {args.out} ({len(emb)} points; class names: {source})")
    return 0


def run_grouping(args: argparse.Namespace) -> int:
    from contrast3d.viz.grouping import grouping_from_weights

    output_file(args.out, suffix=".png")
    info = grouping_from_weights(args.init, args.scene, args.out, network=args.network, device=args.device,
                                 seed=args.seed, grid_size=args.grid_size, title=args.title, bn=args.bn)
    print(f"wrote {args.out} ({info['points']} points, {info['segments']} segments, "
          f"{info['used_prototypes']} prototypes used, purity {info['purity']})")
    return 0


def run_sequence(args: argparse.Namespace) -> int:
    output_file(args.out, suffix=".png")
    from contrast3d.viz.sequence import sequence_from_scene

    fig = sequence_from_scene(args.scene, args.out, objects_dir=args.objects, seed=args.seed, title=args.title)
    info = fig.info
    print(f"wrote {args.out} ({info['scene']}: {info['frames']} frames of {info['object']}, {info['chunks']} chunks "
          f"removed, scene kept {info['scene_keep']:.0%}, object kept {info['object_keep']:.0%})")
    return 0


def run_pixel_point(args: argparse.Namespace) -> int:
    output_file(args.out, suffix=".png")
    from contrast3d.viz.pixel_point import pixel_point_from_weights

    info = pixel_point_from_weights(args.image_net, args.backbone, args.frame, args.out, index=args.index,
                                    projection=args.projection, device=args.device, image_size=args.image_size,
                                    seed=args.seed, center=args.center, title=args.title)
    print(f"wrote {args.out} ({info['frame']}: {info['points']} points; {info['reason']})")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    from contrast3d.viz.curves import plot_runs

    output_file(args.out, suffix=".png")
    if args.label is not None and len(args.label) != len(args.run):
        raise DataError("--label", f"{len(args.label)} label(s) for {len(args.run)} run(s); give one per run")
    keys = plot_runs(args.run, args.out, labels=args.label, keys=args.keys, smoothing=args.smoothing,
                     title=args.title)
    print(f"wrote {args.out} ({len(args.run)} run{'s' if len(args.run) > 1 else ''}: {', '.join(keys)})")
    return 0


def _split_role(run_dir: Path, scene: Path) -> str:
    """``"training scene"`` / ``"validation scene"`` / ``"held-out scene"`` by the run's ``scene_split.json``."""
    import json

    try:
        split = json.loads((run_dir / "scene_split.json").read_text())
        lists = {k: [Path(p) for p in split.get(k, [])] for k in ("train", "val")}
    except (OSError, ValueError, AttributeError, TypeError):
        return "scene"
    here = scene.resolve()
    for key, what in (("train", "training scene"), ("val", "validation scene")):
        if any(p.resolve() == here for p in lists[key]):
            return what
    return "held-out scene"


def run_instances(args: argparse.Namespace) -> int:
    from contrast3d.evaluation.task_runs import (
        box_list,
        gt_boxes,
        gt_instances,
        load_task_run,
        predict_run_boxes,
        predict_run_instances,
        run_task,
    )
    from contrast3d.io.pointcept import read_pointcept_scene

    output_file(args.out, suffix=".png")
    task = run_task(args.model)  # a pre-training or semseg run fails here, before any work
    cloud = read_pointcept_scene(args.scene)
    labelled = cloud.segment is not None and cloud.instance is not None
    run = load_task_run(args.model, args.device)
    role = _split_role(run.run_dir, Path(args.scene))
    title = args.title or f"{cloud.name} ({role}): {run.run_dir.resolve().name}, {task} run"
    if not labelled:
        print(f"note: {args.scene}: no segment + instance.npy, drawing the prediction only")
    if task == "insseg":
        from contrast3d.viz.instances import save_instances_png

        pred = predict_run_instances(run, cloud)
        instance = pred.instance.copy()
        if args.min_score > 0 and len(pred.scores):
            instance[(instance >= 0) & (pred.scores[np.maximum(instance, 0)] < args.min_score)] = -1
        gt_ins, gt_cls = gt_instances(run, cloud) if labelled else (None, None)
        shown = np.unique(instance[instance >= 0]).size
        save_instances_png(cloud.coord, instance, gt_ins, args.out, title=title,
                           pred_class=np.where(instance >= 0, pred.point_class(), -1), gt_class=gt_cls,
                           class_names=run.class_names, pred_score=pred.point_score())
        gt_note = f", {np.unique(gt_ins[gt_ins >= 0]).size} ground-truth" if gt_ins is not None else ""
        print(f"wrote {args.out} ({cloud.name}: {shown} predicted instances{gt_note}; "
              f"{len(pred.classes)} proposals, {int(pred.evaluated.sum())} evaluated)")
        return 0
    from contrast3d.viz.instances import save_boxes_png, top_boxes

    found = predict_run_boxes(run, cloud)
    drawn = top_boxes(found, args.max_boxes, args.min_score)
    gt = gt_boxes(run, cloud) if labelled else None
    save_boxes_png(cloud.coord, drawn, gt, args.out, title=title, class_names=run.class_names)
    best = box_list(found)[:1]
    gt_note = f", {len(gt[0])} ground-truth boxes" if gt is not None else ""
    print(f"wrote {args.out} ({cloud.name}: {len(drawn[0])} of {len(found.scores)} detections drawn"
          f"{f', best {best[0].score:.2f}' if best else ''}{gt_note})")
    return 0
