"""Explanations: tensors in, arrays out (``attribution``); run-level PNG figures (``figures``).

The array functions are re-exported here, so ``cnnkit.explain.gradcam(model, batch)`` works.
"""
from cnnkit.explain.attribution import (
    METHODS,
    confused_pairs,
    conv_layers,
    explain_batch,
    feature_maps,
    filters,
    gradcam,
    integrated_gradients,
    map_summary,
    pixel_baseline,
    resolve_layer,
    spatial_layers,
    top_losses,
    trace,
)

__all__ = ["METHODS", "confused_pairs", "conv_layers", "explain_batch", "feature_maps", "filters", "gradcam",
           "integrated_gradients", "map_summary", "pixel_baseline", "resolve_layer", "spatial_layers",
           "top_losses", "trace"]
