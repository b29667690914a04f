"""What generated modules call: the model base class, neural slots and input signals. Training lives apart."""
from .coupling import Coupling
from .dosing import Doses
from .model import CompiledModel
from .neural import NeuralSlot, mlp
from .signals import Signal, UnboundInputError

__all__ = ["CompiledModel", "Coupling", "Doses", "NeuralSlot", "Signal", "UnboundInputError", "mlp"]
