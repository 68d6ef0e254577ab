"""contrast3d: self-supervised contrastive pre-training of sparse-conv 3D backbones.

Data flows one way: files (:mod:`contrast3d.io`) -> scene records
(:class:`~contrast3d.structures.PointCloud`) -> transforms and views (:mod:`contrast3d.data`)
-> batches (:class:`~contrast3d.structures.PointBatch`) -> backbone (:mod:`contrast3d.models`)
-> method and loss (:mod:`contrast3d.methods`, :mod:`contrast3d.losses`) -> engine
(:mod:`contrast3d.engine`) -> evaluation (:mod:`contrast3d.evaluation`).
"""
import os as _os

# numba's default OpenMP pool keeps spinning after a parallel kernel (pair mining, segmentation):
# training that follows in the same process (quickstart, bench) then runs several times slower on
# few cores. The workqueue pool does not spin. Set before numba is imported; a user's choice wins.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from contrast3d.errors import DataError  # noqa: E402
from contrast3d.structures import (
    MultiView,
    PairBatch,
    PointBatch,
    PointCloud,
    ViewBatch,
    collate_pairs,
    collate_points,
    collate_views,
    view_pair,
)

__version__ = "0.1.0"

__all__ = ["DataError", "PointCloud", "PointBatch", "MultiView", "ViewBatch", "PairBatch", "view_pair",
           "collate_points", "collate_views", "collate_pairs", "__version__"]
