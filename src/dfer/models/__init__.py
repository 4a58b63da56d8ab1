"""The model zoo: every model maps float clips ``(B, T, C, H, W)`` to logits ``(B, K)``.

>>> from dfer.models import create_model
>>> model = create_model("tsm_resnet18", num_classes=7, pretrained=True, shift_div=8)

Registered (:func:`list_models`): ``tsm_resnet18`` (the MIDAS backbone), ``resnet18_gru``
(2DCNN-GRU), ``r3d_18`` (3D-CNN) and ``rdfer_resnet18`` (RDFER's dual-stream network).
Each exposes ``num_classes``, ``features(clip) -> (B, D)``, ``classifier`` and
``reset_classifier(num_classes)``.
"""

from dfer.models import cnn_rnn, r3d, rdfer, tsm  # noqa: F401  (registers the builders)
from dfer.models.base import ClipClassifier, check_clip
from dfer.models.cnn_rnn import ResNet18GRU, resnet18_gru
from dfer.models.r3d import R3D18, r3d_18
from dfer.models.registry import create_model, create_model_for_weights, list_models, model_options, register_model
from dfer.models.tsm import TSMResNet18, temporal_shift, temporal_shift_frames, tsm_resnet18

__all__ = [
    "ClipClassifier",
    "R3D18",
    "ResNet18GRU",
    "TSMResNet18",
    "check_clip",
    "create_model",
    "create_model_for_weights",
    "list_models",
    "model_options",
    "r3d_18",
    "register_model",
    "resnet18_gru",
    "temporal_shift",
    "temporal_shift_frames",
    "tsm_resnet18",
]
