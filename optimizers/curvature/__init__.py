"""Curvature capture for Linear and Conv2d layers, shared by every Kronecker-factored method
(KFAC now; K-BFGS and TENGraD read the same records)."""

from optimizers.curvature.capture import (
    CurvatureCapture,
    CurvatureCaptureError,
    UnsupportedLayerWarning,
)
from optimizers.curvature.layers import (
    CapturedLayer,
    LayerKind,
    as_matrix,
    layer_directions,
    split_matrix,
)

__all__ = [
    "CapturedLayer",
    "CurvatureCapture",
    "CurvatureCaptureError",
    "LayerKind",
    "UnsupportedLayerWarning",
    "as_matrix",
    "layer_directions",
    "split_matrix",
]
