"""PyTorch networks built from architectures (the spaces' ``build`` methods return these)."""

from .darts_net import DartsNetwork
from .enas_macro_net import EnasMacroNet
from .nb101_net import NB101Net
from .nb201_net import NB201Network
from .plain_convnet import PlainConvNet

__all__ = ["DartsNetwork", "EnasMacroNet", "NB101Net", "NB201Network", "PlainConvNet"]
