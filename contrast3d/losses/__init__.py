"""Pure tensor-in / scalar-out losses. Each is an ``nn.Module`` plus a functional form."""
from contrast3d.losses.hardest_contrastive import HardestContrastiveLoss, hardest_contrastive
from contrast3d.losses.info_nce import PointInfoNCE, matched_rows, point_info_nce

__all__ = ["PointInfoNCE", "matched_rows", "point_info_nce", "HardestContrastiveLoss", "hardest_contrastive"]
