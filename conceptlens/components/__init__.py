"""Feature components of different complexity — SCIENCE.md §7 (seed 001).

Disentangle the feature ``f(x)`` of a layer into components of increasing complexity with
disentangler nets ``Φ^(l)`` of ``l`` ReLU layers, and measure their significance,
reliability, effectiveness and over-fitting. Pure torch/NumPy: modules and tensors in,
arrays out.

Example:
    >>> import torch
    >>> from conceptlens.components import train_disentanglers, significance, predict_orders
    >>> x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> f = torch.nn.functional.conv2d(x, torch.ones(2, 1, 3, 3), padding=1)  # linear in x
    >>> trained = train_disentanglers(x, f, x, f, orders=(0, 1), width=4, epochs=60, lr=3e-2)
    >>> rho = significance(predict_orders(trained, x), f, orders=(0, 1)).component
    >>> bool(rho[0] > 0.95 and rho[1] < 0.05)
    True
"""

from conceptlens.components.disentangler import (
    DEFAULT_ORDERS,
    Disentangler,
    TrainedOrder,
    predict,
    predict_orders,
    train_disentanglers,
)
from conceptlens.components.features import (
    ComponentsError,
    extract,
    feature_extractor,
    layer_names,
    layer_shapes,
    module_of,
    tail_runner,
)
from conceptlens.components.maps import (
    ComponentMaps,
    ImageMaps,
    component_maps,
    image_maps,
    most_activated_channel,
)
from conceptlens.components.metrics import (
    ComponentGame,
    Effects,
    Reliability,
    Significance,
    components,
    cycle_map,
    effects,
    reliability,
    significance,
)
from conceptlens.components.onnx_graph import OnnxNetwork
from conceptlens.components.pipeline import ComponentsResult, TrainingPlan, analyze_components
from conceptlens.components.shapley import shapley_from_table, shapley_values
from conceptlens.components.stats import r_squared, variance

__all__ = [
    "DEFAULT_ORDERS",
    "ComponentGame",
    "ComponentMaps",
    "ComponentsError",
    "ComponentsResult",
    "Disentangler",
    "Effects",
    "ImageMaps",
    "OnnxNetwork",
    "Reliability",
    "Significance",
    "TrainedOrder",
    "TrainingPlan",
    "analyze_components",
    "component_maps",
    "components",
    "cycle_map",
    "effects",
    "extract",
    "feature_extractor",
    "image_maps",
    "layer_names",
    "layer_shapes",
    "module_of",
    "most_activated_channel",
    "predict",
    "predict_orders",
    "r_squared",
    "reliability",
    "shapley_from_table",
    "shapley_values",
    "significance",
    "tail_runner",
    "train_disentanglers",
    "variance",
]
