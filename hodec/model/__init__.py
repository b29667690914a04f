from .build import build_model
from .model import Model

__all__ = ["Model", "build_model"]
