"""Models: the CLIP factory, the tensor catalogue, the mini zoo."""
from .catalogue import TensorInfo, eligible_names, image_family, tensor_catalogue
from .factory import Clip, available_models, load_clip, read_checkpoint, resolve_device

__all__ = ["Clip", "TensorInfo", "available_models", "eligible_names", "image_family", "load_clip",
           "read_checkpoint", "resolve_device", "tensor_catalogue"]
