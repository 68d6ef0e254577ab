"""GroupContrast losses against naive float64 loops, hand-built examples and a 2-process gloo centre update.

Each known bug of an unofficial port has its own test: (a) contrastive similarities not divided
by tau (``test_tau_divides_the_contrastive_logits``), (b) confidence summed over all prototypes
(``test_confidence_weight_is_shared_group_product``), (c) centre averaged over the world size
only under DDP (``test_update_center_is_a_local_mean_without_ddp`` and
``test_update_center_two_gloo_processes_match_one``).
"""
from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from contrast3d.losses.groupcontrast import (
    GroupContrastLossConfig,
    GroupingLoss,
    SemanticContrastLoss,
    TeacherCenter,
    collapse_stats,
    common_segments,
    distributed_sum,
    group_labels,
    grouping_loss,
    prototype_logits,
    sample_per_scene,
    segment_index,
    segment_mean,
    semantic_contrast_loss,
    student_assignment,
    teacher_assignment,
    teacher_temperature,
    update_center,
)
from contrast3d.losses.info_nce import point_info_nce

D64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- naive references


def naive_segment_mean(feat, segment, normalize=True):
    ids = sorted({int(s) for s in segment if int(s) >= 0})
    rows = []
    for sid in ids:
        acc = [0.0] * feat.shape[1]
        cnt = 0
        for p in range(feat.shape[0]):
            if int(segment[p]) == sid:
                v = [float(x) for x in feat[p]]
                if normalize:
                    nrm = math.sqrt(sum(x * x for x in v))
                    v = [x / nrm for x in v]
                acc = [a + x for a, x in zip(acc, v)]
                cnt += 1
        rows.append([a / cnt for a in acc])
    return torch.tensor(rows, dtype=D64), ids


def naive_softmax(row, tau):
    m = max(row)
    e = [math.exp((x - m) / tau) for x in row]
    s = sum(e)
    return [x / s for x in e]


def naive_grouping(student_logits, teacher, tau_s, informative):
    num = den = 0.0
    for i in range(student_logits.shape[0]):
        q = naive_softmax([float(x) for x in student_logits[i]], tau_s)
        k = [float(x) for x in teacher[i]]
        h = -sum(x * math.log(x) for x in k if x > 0) if informative else 1.0
        num += h * -sum(kj * math.log(qj) for kj, qj in zip(k, q))
        den += h
    return num / den


def naive_contrast(q, k, qg, kg, qa, ka, tau, confidence, match=None, qs=None, ks=None):
    """Eq. 8 term by term: one InfoNCE per positive pair, denominator = that positive + the negatives."""
    qn = [[float(x) for x in r / r.norm()] for r in q]
    kn = [[float(x) for x in r / r.norm()] for r in k]

    def sim(i, j):
        return sum(a * b for a, b in zip(qn[i], kn[j])) / tau

    total, count = 0.0, 0
    for i in range(len(qn)):
        same_scene = [qs is None or int(qs[i]) == int(ks[j]) for j in range(len(kn))]
        if match is None:
            pos = [same_scene[j] and int(qg[i]) >= 0 and int(qg[i]) == int(kg[j]) for j in range(len(kn))]
        else:
            pos = [same_scene[j] and int(match[i]) == j and (not confidence or int(qg[i]) >= 0)
                   for j in range(len(kn))]
        negs = [j for j in range(len(kn)) if same_scene[j] and not pos[j]]
        for j in range(len(kn)):
            if not pos[j]:
                continue
            den = math.exp(sim(i, j)) + sum(math.exp(sim(i, m)) for m in negs)
            c = float(qa[i, int(qg[i])]) * float(ka[j, int(qg[i])]) if confidence else 1.0
            total += -c * math.log(math.exp(sim(i, j)) / den)
            count += 1
    return total / count


def random_problem(seed, n_q=9, n_k=11, dim=5, n_proto=3):
    g = gen(seed)
    q = torch.randn(n_q, dim, generator=g, dtype=D64)
    k = torch.randn(n_k, dim, generator=g, dtype=D64)
    qa = torch.softmax(torch.randn(n_q, n_proto, generator=g, dtype=D64), 1)
    ka = torch.softmax(torch.randn(n_k, n_proto, generator=g, dtype=D64), 1)
    qg, kg = qa.argmax(1), ka.argmax(1)
    qg[0] = -1  # a point without a segment
    return q, k, qg, kg, qa, ka


# ----------------------------------------------------------------------------- segments


@pytest.mark.parametrize("normalize", [True, False])
def test_segment_mean_matches_loop(normalize):
    g = gen(0)
    feat = torch.randn(40, 4, generator=g, dtype=D64)
    segment = torch.tensor([7, 3, -1, 12] * 10)
    segment[5] = 100
    got, ids = segment_mean(feat, segment, normalize=normalize)
    ref, ref_ids = naive_segment_mean(feat, segment, normalize)
    assert ids.tolist() == ref_ids == [3, 7, 12, 100]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_segment_mean_fixed_rows_and_gradient():
    feat = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], dtype=D64, requires_grad=True)
    got, ids = segment_mean(feat, torch.tensor([2, 2, -1]), num_segments=4)
    assert ids.tolist() == [0, 1, 2, 3]
    expected = torch.tensor([[0, 0], [0, 0], [0.3, 0.9], [0, 0]], dtype=D64)  # mean of (0.6, 0.8), (0, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    got.sum().backward()
    assert feat.grad[2].abs().sum() == 0 and feat.grad[:2].abs().sum() > 0
    with pytest.raises(ValueError):
        segment_mean(feat, torch.tensor([0, 9, 1]), num_segments=4)


def test_segment_index_and_group_labels():
    ids = torch.tensor([3, 7, 12])
    row = segment_index(torch.tensor([12, -1, 3, 5, 7, 99]), ids)
    assert row.tolist() == [2, -1, 0, -1, 1, -1]
    k = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert group_labels(k).tolist() == [1, 0, 1]
    assert group_labels(k, row).tolist() == [1, -1, 1, -1, 0, -1]


def test_common_segments_align_both_views():
    a, b = common_segments(torch.tensor([4, 4, 9, -1, 2]), torch.tensor([2, 7, 4, 4, -1]))
    assert a.tolist() == [4, 4, -1, -1, 2] and b.tolist() == [2, -1, 4, 4, -1]
    feat = torch.randn(5, 3, dtype=D64)
    assert torch.equal(segment_mean(feat, a)[1], segment_mean(feat, b)[1])


def test_sample_per_scene():
    scene = torch.tensor([0] * 50 + [1] * 3 + [2] * 20)
    idx = sample_per_scene(scene, num=10, generator=gen(1))
    assert idx.unique().numel() == idx.numel()
    assert torch.bincount(scene[idx]).tolist() == [10, 3, 10]
    again = sample_per_scene(scene, num=10, generator=gen(1))
    assert torch.equal(idx, again)
    assert not torch.equal(idx, sample_per_scene(scene, num=10, generator=gen(2)))


# ----------------------------------------------------------------------------- assignments and centre


def test_assignments_match_eq1_and_centre_is_a_logit_bias():
    g = gen(3)
    z = torch.randn(6, 4, generator=g, dtype=D64)
    protos = torch.randn(3, 4, generator=g, dtype=D64)
    logits = prototype_logits(z, protos)
    for i in range(6):
        for j in range(3):
            cos = float(z[i] @ protos[j]) / float(z[i].norm() * protos[j].norm())
            assert float(logits[i, j]) == pytest.approx(cos, abs=1e-12)
    q = student_assignment(logits, 0.1)
    c = torch.tensor([0.3, -0.2, 0.5], dtype=D64)
    k = teacher_assignment(logits, c, 0.07)
    for i in range(6):
        row = [float(x) for x in logits[i]]
        assert q[i].tolist() == pytest.approx(naive_softmax(row, 0.1), abs=1e-12)
        centred = [x - float(cj) for x, cj in zip(row, c)]
        assert k[i].tolist() == pytest.approx(naive_softmax(centred, 0.07), abs=1e-12)
    # a constant centre changes nothing; the teacher output carries no gradient
    torch.testing.assert_close(teacher_assignment(logits, torch.full((3,), 0.4, dtype=D64)),
                               teacher_assignment(logits))
    assert not teacher_assignment(logits.clone().requires_grad_(), c).requires_grad


def test_teacher_temperature_warmup():
    assert teacher_temperature(0) == 0.07
    assert teacher_temperature(0, warmup_steps=10) == pytest.approx(0.04)
    assert teacher_temperature(5, warmup_steps=10) == pytest.approx(0.055)
    assert teacher_temperature(10, warmup_steps=10) == pytest.approx(0.07)
    assert teacher_temperature(1000, warmup_steps=10) == pytest.approx(0.07)


def test_update_center_is_a_local_mean_without_ddp():
    g = gen(4)
    logits = torch.randn(5, 3, generator=g, dtype=D64, requires_grad=True)
    center = torch.tensor([1.0, 2.0, 3.0], dtype=D64)
    new = update_center(center, logits, momentum=0.9)
    for j in range(3):
        mean = sum(float(logits[i, j].detach()) for i in range(5)) / 5
        assert float(new[j]) == pytest.approx(0.9 * float(center[j]) + 0.1 * mean, abs=1e-12)
    assert not new.requires_grad and center.tolist() == [1.0, 2.0, 3.0]
    # no segment anywhere -> unchanged
    torch.testing.assert_close(update_center(center, logits[:0]), center)
    # a functional all-reduce (returns the sum) over one process is the identity
    torch.testing.assert_close(update_center(center, logits, 0.9, all_reduce=lambda t: t.clone()), new)
    mod = TeacherCenter(3, momentum=0.9).double()
    mod.update(logits)
    torch.testing.assert_close(mod.center, update_center(torch.zeros(3, dtype=D64), logits, 0.9))
    assert "center" in mod.state_dict()


def _center_worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        logits = torch.randn(10, 4, generator=gen(5), dtype=D64)
        part = logits[:3] if rank == 0 else logits[3:]  # 3 vs 7 segments
        center = torch.tensor([0.5, -1.0, 0.25, 2.0], dtype=D64)
        torch.save(update_center(center, part, 0.8, all_reduce=distributed_sum), Path(out_dir) / f"c{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_update_center_two_gloo_processes_match_one(tmp_path):
    import torch.multiprocessing as mp

    # The spawned children import this file under the name pytest gave it: put its import root on their path.
    root = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    mp.spawn(_center_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    logits = torch.randn(10, 4, generator=gen(5), dtype=D64)
    center = torch.tensor([0.5, -1.0, 0.25, 2.0], dtype=D64)
    single = update_center(center, logits, 0.8)
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"c{rank}.pt"), single, rtol=1e-12, atol=1e-12)
    # the average of the two local means (a per-process mean divided by the world size) is different
    wrong = 0.8 * center + 0.2 * (logits[:3].mean(0) + logits[3:].mean(0)) / 2
    assert not torch.allclose(wrong, single)


# ----------------------------------------------------------------------------- grouping loss


@pytest.mark.parametrize("informative", [True, False])
def test_grouping_loss_matches_loop(informative):
    g = gen(6)
    student = torch.randn(7, 4, generator=g, dtype=D64)
    teacher = torch.softmax(torch.randn(7, 4, generator=g, dtype=D64) / 0.07, 1)
    got = grouping_loss(student, teacher, 0.1, informative)
    assert got.item() == pytest.approx(naive_grouping(student, teacher, 0.1, informative), rel=1e-10)
    assert GroupingLoss(0.1, informative)(student, teacher).item() == pytest.approx(got.item(), rel=1e-14)


def test_grouping_loss_entropy_weights_by_hand():
    # segment 0: one-hot teacher (H = 0, ignored); segment 1: uniform teacher over 2 (H = log 2)
    student = torch.tensor([[0.0, 0.3], [0.2, -0.1]], dtype=D64)
    teacher = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=D64)
    q1 = naive_softmax([0.2, -0.1], 0.1)
    expected = -(0.5 * math.log(q1[0]) + 0.5 * math.log(q1[1]))
    assert grouping_loss(student, teacher).item() == pytest.approx(expected, rel=1e-12)
    q0 = naive_softmax([0.0, 0.3], 0.1)
    assert grouping_loss(student, teacher, informative=False).item() == pytest.approx(
        (expected - math.log(q0[0])) / 2, rel=1e-12)


def test_grouping_loss_gradients():
    g = gen(7)
    student = torch.randn(5, 3, generator=g, dtype=D64, requires_grad=True)
    teacher = torch.softmax(torch.randn(5, 3, generator=g, dtype=D64), 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: grouping_loss(s, teacher.detach()), (student,))
    grouping_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    empty = torch.zeros(0, 3, requires_grad=True)
    assert grouping_loss(empty, empty.detach()).item() == 0.0


# ----------------------------------------------------------------------------- semantic-aware contrast


@pytest.mark.parametrize("confidence", [True, False])
@pytest.mark.parametrize("tau", [0.4, 1.0])
def test_contrast_matches_loop(confidence, tau):
    q, k, qg, kg, qa, ka = random_problem(8)
    got = semantic_contrast_loss(q, k, qg, kg, qa, ka, tau=tau, confidence=confidence)
    ref = naive_contrast(q, k, qg, kg, qa, ka, tau, confidence)
    assert got.item() == pytest.approx(ref, rel=1e-10)


def test_contrast_with_scenes_and_matched_positives_match_loop():
    q, k, qg, kg, qa, ka = random_problem(9)
    qs = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    ks = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    got = semantic_contrast_loss(q, k, qg, kg, qa, ka, query_scene=qs, key_scene=ks)
    assert got.item() == pytest.approx(naive_contrast(q, k, qg, kg, qa, ka, 0.4, True, qs=qs, ks=ks), rel=1e-10)
    match = torch.tensor([0, 3, -1, 2, 8, 5, 6, 10, 7])
    for conf in (True, False):
        got = semantic_contrast_loss(q, k, qg, kg, qa, ka, confidence=conf, positives="matched", match=match)
        assert got.item() == pytest.approx(naive_contrast(q, k, qg, kg, qa, ka, 0.4, conf, match=match), rel=1e-10)
        # per scene (blocks with local key indices)
        match_x = match.clone()
        match_x[5] = 1  # a match into the other scene is dropped
        got = semantic_contrast_loss(q, k, qg, kg, qa, ka, confidence=conf, positives="matched", match=match_x,
                                     query_scene=qs, key_scene=ks)
        ref = naive_contrast(q, k, qg, kg, qa, ka, 0.4, conf, match=match_x, qs=qs, ks=ks)
        assert got.item() == pytest.approx(ref, rel=1e-10)


def test_matched_without_confidence_is_point_info_nce():
    q, k, qg, kg, _, _ = random_problem(10, n_q=8, n_k=8)
    got = semantic_contrast_loss(q, k, qg, kg, confidence=False, positives="matched", match=torch.arange(8))
    assert got.item() == pytest.approx(point_info_nce(q, k, tau=0.4).item(), rel=1e-12)


def test_tau_divides_the_contrastive_logits():
    q, k, qg, kg, qa, ka = random_problem(11)
    # without normalisation, tau acts exactly like dividing the query by tau
    a = semantic_contrast_loss(q, k, qg, kg, qa, ka, tau=0.4, normalize=False)
    b = semantic_contrast_loss(q / 0.4, k, qg, kg, qa, ka, tau=1.0, normalize=False)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    # tau = 0.4 is not tau = 1 (the bug), and each agrees with the loop
    l04 = semantic_contrast_loss(q, k, qg, kg, qa, ka, tau=0.4)
    l1 = semantic_contrast_loss(q, k, qg, kg, qa, ka, tau=1.0)
    assert abs(l04.item() - l1.item()) > 1e-3
    assert l04.item() == pytest.approx(naive_contrast(q, k, qg, kg, qa, ka, 0.4, True), rel=1e-10)
    # well-separated groups: a lower temperature sharpens the softmax and lowers the loss
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    feats = F.one_hot(groups, 3).to(D64) + 0.05 * torch.randn(6, 3, generator=gen(12), dtype=D64)
    losses = [semantic_contrast_loss(feats, feats, groups, groups, tau=t, confidence=False).item()
              for t in (1.0, 0.4, 0.1)]
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] == pytest.approx(naive_contrast(feats, feats, groups, groups, None, None, 0.1, False), rel=1e-10)


def test_confidence_weight_is_shared_group_product():
    # one anchor (group 1), one positive key (group 1) and one negative key (group 0)
    q = torch.tensor([[1.0, 0.0]], dtype=D64)
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]], dtype=D64)
    qa = torch.tensor([[0.3, 0.6, 0.1]], dtype=D64)
    ka = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1]], dtype=D64)
    qg, kg = torch.tensor([1]), torch.tensor([1, 0])
    plain = semantic_contrast_loss(q, k, qg, kg, confidence=False)
    weighted = semantic_contrast_loss(q, k, qg, kg, qa, ka)
    expected_plain = -math.log(math.exp(0.6 / 0.4) / (math.exp(0.6 / 0.4) + math.exp(0.0)))
    assert plain.item() == pytest.approx(expected_plain, rel=1e-12)
    assert weighted.item() / plain.item() == pytest.approx(0.6 * 0.7, rel=1e-12)  # K[s_i,1] K[s_j,1]
    summed = float((qa[0] * ka[0]).sum())  # 0.49: the buggy sum over all prototypes
    assert abs(weighted.item() / plain.item() - summed) > 0.05


def test_contrast_gradients_and_stop_gradient():
    q, k, qg, kg, qa, ka = random_problem(13)
    q.requires_grad_()
    k.requires_grad_()
    qa.requires_grad_()
    ka.requires_grad_()
    loss = SemanticContrastLoss()(q, k, qg, kg, qa, ka)
    loss.backward()
    assert k.grad is None and qa.grad is None and ka.grad is None
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    kd, qad, kad = k.detach(), qa.detach(), ka.detach()
    assert torch.autograd.gradcheck(lambda x: semantic_contrast_loss(x, kd, qg, kg, qad, kad),
                                    (q.detach().requires_grad_(),))


def test_contrast_edge_cases():
    q = torch.randn(3, 4, dtype=D64, requires_grad=True)
    # no positive pair -> 0 with a gradient path
    none = semantic_contrast_loss(q, q.detach(), torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1]), confidence=False)
    assert none.item() == 0.0 and none.requires_grad
    # all keys positive (no negatives) -> every term is -log 1 = 0, finite gradients
    allpos = semantic_contrast_loss(q, q.detach(), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                                    confidence=False)
    allpos.backward()
    assert allpos.item() == pytest.approx(0.0, abs=1e-15) and torch.isfinite(q.grad).all()
    with pytest.raises(ValueError):
        semantic_contrast_loss(q, q, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        semantic_contrast_loss(q, q, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                               confidence=False, positives="matched")


# ----------------------------------------------------------------------------- monitors and config


def test_collapse_stats():
    collapsed = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 5)
    s = collapse_stats(collapsed)
    assert s["mean_assign_entropy"] == pytest.approx(0.0) and s["used_prototypes"] == 1
    spread = torch.eye(4)
    s = collapse_stats(spread)
    assert s["mean_assign_entropy"] == pytest.approx(math.log(4)) and s["used_prototypes"] == 4
    assert s["mean_assign_entropy_ratio"] == pytest.approx(1.0) and s["segment_entropy"] == pytest.approx(0.0)
    uniform = torch.full((3, 4), 0.25)
    assert collapse_stats(uniform)["segment_entropy"] == pytest.approx(math.log(4))


def test_config_defaults_follow_the_paper():
    cfg = GroupContrastLossConfig()
    assert (cfg.num_prototypes, cfg.tau_s, cfg.tau_t, cfg.tau, cfg.num_samples) == (32, 0.1, 0.07, 0.4, 2048)
    assert cfg.informative and cfg.confidence and cfg.positives == "group"
