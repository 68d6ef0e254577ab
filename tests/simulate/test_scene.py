"""Scene generator: determinism, label table, class coverage, no interpenetration."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from contrast3d.simulate import classes as C
from contrast3d.simulate.footprint import fill_points, objects_collide
from contrast3d.simulate.scene import generate_scene

SEEDS = range(6)


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(s) for s in SEEDS]


def test_same_seed_same_scene_and_different_seeds_differ(scenes):
    again = generate_scene(SEEDS[2])
    a = scenes[2].mesh
    b = again.mesh
    for x, y in ((a.vertices, b.vertices), (a.faces, b.faces), (a.vertex_color, b.vertex_color),
                 (a.vertex_segment, b.vertex_segment), (a.vertex_instance, b.vertex_instance)):
        np.testing.assert_array_equal(x, y)
    other = scenes[3].mesh
    assert a.num_vertices != other.num_vertices or not np.array_equal(a.vertices, other.vertices)


def test_mesh_valid_and_labels_in_class_table(scenes):
    for sc in scenes:
        m = sc.mesh
        m.validate()
        assert m.vertex_segment.min() >= C.IGNORE and m.vertex_segment.max() < len(C.SCANNET20_NAMES)
        assert np.all((m.vertex_color >= 0) & (m.vertex_color <= 1))
        np.testing.assert_allclose(np.linalg.norm(m.vertex_normal, axis=1), 1.0, atol=1e-4)
        # faces never mix labels or instances; an instance has exactly one label
        seg, inst = m.vertex_segment[m.faces], m.vertex_instance[m.faces]
        assert (seg == seg[:, :1]).all() and (inst == inst[:, :1]).all()
        pairs = np.unique(np.stack([m.vertex_instance, m.vertex_segment], 1), axis=0)
        pairs = pairs[pairs[:, 0] >= 0]
        assert len(np.unique(pairs[:, 0])) == len(pairs)
        assert not (m.vertex_instance[m.vertex_segment < 0] >= 0).any()
        for cls in (C.WALL, C.FLOOR):
            assert (m.vertex_segment == cls).any()


def test_class_names_match_scannet20():
    assert C.SCANNET20_NAMES[0] == "wall" and C.SCANNET20_NAMES[19] == "otherfurniture"
    assert C.CLASS_IDS["shower curtain"] == 15 and C.CLASS_IDS["ceiling"] == -1
    assert len(C.SCANNET20_NAMES) == len(C.CLASS_COLORS) == 20


def test_many_furniture_classes_occur(scenes):
    seen = set()
    for sc in scenes:
        seen |= set(np.unique(sc.mesh.vertex_segment).tolist())
    assert len(seen & C.FURNITURE_IDS) >= 10, sorted(seen)
    assert {C.DOOR, C.WINDOW} <= seen


def test_no_interpenetration_and_inside_rooms(scenes):
    for sc in scenes:
        objs = [o for o in sc.objects if o.kind != "reserve"]
        assert len([o for o in objs if o.kind == "furniture"]) >= 3
        for a, b in itertools.combinations(sc.objects, 2):
            if a.group >= 0 and a.group == b.group:
                continue
            assert not objects_collide(a, b, margin=-1e-6), (sc.name, a.name, b.name)
        for o in objs:
            assert (sc.plan.room_at(fill_points(o)) == o.room).all(), (sc.name, o.name)
            assert 0.0 <= o.z0 < o.z1 <= sc.plan.height


def test_placed_instances_exist_in_mesh(scenes):
    for sc in scenes:
        ids = set(np.unique(sc.mesh.vertex_instance).tolist())
        for o in sc.objects:
            if o.kind == "furniture" and o.label >= 0:
                assert o.instance in ids
