import numpy as np
import pytest
import torch

from contrast3d.methods.common import BackboneConfig, PairDataConfig, build_pair_dataset, pair_collate
from contrast3d.methods.pointcontrast import PointContrast, PointContrastConfig

DATA = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, strict=True)


@pytest.fixture(scope="module")
def batch(sim_scenes):
    ds = build_pair_dataset(str(sim_scenes), DATA)
    return pair_collate(DATA)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)]), ds


def test_holistic_views_are_differently_augmented_and_matched_in_world(batch):
    pb, ds = batch
    pair = ds.get_sample(0, np.random.default_rng(5))
    raw = ds.raw(0)
    # every match is within the radius in world coordinates (pre-augmentation)
    w1 = raw.coord[pair.view1.meta["origin_index"]]
    w2 = raw.coord[pair.view2.meta["origin_index"]]
    d = np.linalg.norm(w1[pair.matches[:, 0]] - w2[pair.matches[:, 1]], axis=1)
    assert len(d) > 100 and d.max() <= DATA.match_radius + 1e-6
    # ... while the augmented coordinates differ (independent rigid transforms per view)
    a = pair.view1.coord[pair.matches[:, 0]]
    b = pair.view2.coord[pair.matches[:, 1]]
    assert np.median(np.linalg.norm(a - b, axis=1)) > 0.3


@pytest.mark.parametrize("loss,negatives", [("infonce", "batch"), ("infonce", "scene"),
                                            ("hardest", "batch"), ("hardest", "scene")])
def test_loss_variants_train(batch, loss, negatives):
    pb, _ = batch
    torch.manual_seed(0)
    method = PointContrast(PointContrastConfig(loss=loss, negatives=negatives, num_matches=512, num_negatives=256),
                           BackboneConfig(preset="spunet-tiny"), DATA)
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    method.train()
    losses = []
    for _ in range(6):
        torch.manual_seed(1)  # same match sample each step: the loss on it must go down
        out = method(pb)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
