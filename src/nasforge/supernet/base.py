"""What every super-network shares: the registry, the batch-norm options, the factory and weight inheritance.

One module per super-network registers it in :data:`SUPERNETS` (``darts``, ``nb201``, ``enas-macro``).

A super-network holds every candidate operation of every possible edge once; ``supernet(x, arch)``
runs only the operations and inputs that ``arch`` chooses (ENAS' and EDNAS' single path, ``M = 1``),
so a training step costs about what one child costs. :func:`child_state_dict` maps the weights of
the chosen operations onto the fixed child that ``space.build(arch, ...)`` makes, which is how a
derived architecture inherits its weights (:func:`extract_child` builds and loads it).

The cell super-networks (``darts``, ``nb201``) are the fixed networks themselves, built around a
parameter-free placeholder cell whose cells are then swapped for
:class:`~nasforge.supernet.cells.SharedDAGCell` s: stem, preprocessing, reduction blocks, heads and
every module name outside the cells are those of the fixed child, so the weight mapping only has to
rename an edge's operation (``cells.3.dag.edges.5.X`` of the child is
``cells.3.dag.edges.<edge>.<op>.X`` of the super-network).

Batch norm (options, passed with the model arguments):

- ``shared_affine`` (False): the batch norms inside candidate operations have no learnable scale and
  shift, as in ENAS' and EDNAS' shared child models and DARTS' search network: a scale learnt under one
  child's input statistics would be wrong for the next. The layers every child uses (stem,
  preprocessing, reduction blocks, ENAS' skip combination) keep the fixed networks' affine batch norm.
  A child with affine operations inherits scale 1 and shift 0, which is what ``affine=False`` computes.
- ``running_stats`` (False): every batch norm normalises with the statistics of the batch it sees, in
  training and in evaluation mode. This is ENAS' choice (its controller's reward runs the shared child
  with ``is_training=True`` on a validation minibatch): the running averages of a shared operation
  would mix the statistics of every child that used it, under different inputs, so a validation
  minibatch is evaluated with its own statistics instead (use minibatches of a reasonable size, not a
  handful of samples). With ``running_stats=True`` every batch norm keeps running averages (updated only
  when its operation is on the sampled path) and they are inherited by children; a child of a
  ``running_stats=False`` super-network gets fresh running statistics and needs
  :func:`recalibrate_batch_norm` on a few training batches before it is evaluated in eval mode.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch import Architecture
from ..config import build as build_config
from ..config import to_dict
from ..registry import Registry
from ..spaces.base import SearchSpace
from .cells import CellDescription, Mixture, SharedDAGCell, mixing, selecting

log = logging.getLogger(__name__)

#: super-network classes by space name; capability ``model_args`` is the space's model-argument dataclass
SUPERNETS: Registry = Registry("super-network")


@dataclass
class SupernetOptions:
    """Batch-norm choices of a super-network (see the module docstring)."""

    shared_affine: bool = False  # learnable BN scale/shift inside candidate operations
    running_stats: bool = False  # keep BN running averages (else every batch uses its own statistics)


@dataclass
class Relaxed:
    """A relaxed architecture (DARTS, GDAS): weights over the options of every decision of the space.

    ``weights`` is ``(n_decisions, width)``; row ``d`` weighs the options of decision ``d`` in the order of
    its labels (padded to ``width``). A cell super-network uses the rows of the operation decisions of its
    edges (:meth:`CellSupernet.edge_decisions`) and sums every edge of a node, whatever the structure
    decisions say. ``index`` (one option per decision, GDAS' hard sample) runs only that operation of
    each edge (:class:`~nasforge.supernet.cells.Mixture`).
    """

    weights: torch.Tensor
    index: torch.Tensor | None = None

    def detach(self) -> Relaxed:
        """The same weights without gradient (a step of the network's own weights)."""
        return Relaxed(self.weights.detach(), self.index)


class Supernet:
    """What every super-network offers besides ``forward(x, arch)``; mixed into an ``nn.Module``.

    Attributes:
        space: the search space whose architectures it runs.
        model_args: the model arguments of the fixed child (``space.build(arch, **model_args)``).
        num_classes, in_channels: as given to :func:`build_supernet`.
        options: the :class:`SupernetOptions`.
    """

    space: SearchSpace
    model_args: dict[str, Any]
    num_classes: int
    in_channels: int
    options: SupernetOptions

    def _remember(
        self, space: SearchSpace, args: Any, num_classes: int, in_channels: int, options: SupernetOptions
    ) -> None:
        self.space = space
        self.model_args = to_dict(args)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.options = options

    def build_child(self, arch: Architecture) -> nn.Module:
        """The fixed network of ``arch`` with this super-network's size (freshly initialised)."""
        return self.space.build(arch, num_classes=self.num_classes, in_channels=self.in_channels, **self.model_args)

    def child_tensor(self, arch: Architecture, key: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The value of the fixed child's state-dict entry ``key`` in ``state`` (this network's state
        dict), or None when the super-network has no counterpart (batch-norm affine or running
        statistics it does not keep). By default the names agree."""
        return state.get(key)


class CellSupernet(Supernet):
    """Super-network whose searched parts are :class:`SharedDAGCell` s at the fixed network's cell paths."""

    shared: dict[str, SharedDAGCell]

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        """The cell description each shared cell runs for ``arch``, by module path."""
        raise NotImplementedError

    def edge_decisions(self) -> dict[str, tuple[int, ...]]:
        """For each shared cell (by module path), the space's decision that chooses the operation of each of
        its edges, in the cell's edge order: the rows of a :class:`Relaxed` architecture it runs."""
        raise NotImplementedError

    def relaxed_decisions(self) -> list[int]:
        """The decisions whose rows of a :class:`Relaxed` architecture the relaxed forward reads (each is one
        that perturbation-based selection decides): by default the edges' operation decisions."""
        return sorted({d for rows in self.edge_decisions().values() for d in rows})

    def check_relaxable(self) -> None:
        """Check that every edge's decision lists the cell's operations in the cell's order (what
        :class:`Relaxed` weights assume)."""
        for path, rows in self.edge_decisions().items():
            cell = self.shared[path]
            if len(rows) != len(cell.edges):
                raise ValueError(f"{path}: {len(rows)} edge decisions for {len(cell.edges)} edges")
            for d in rows:
                labels = tuple(self.space.decisions[d].labels or ())
                if labels != cell.ops:
                    raise ValueError(f"{path}: decision {self.space.decisions[d].name} lists {labels}, "
                                     f"the cell's operations are {cell.ops}")

    def forward(self, x: torch.Tensor, arch: Architecture | Relaxed) -> Any:
        """The fixed network's forward pass through the operations ``arch`` chooses, or with every operation
        weighted by a :class:`Relaxed` architecture."""
        if isinstance(arch, Relaxed):
            with mixing(self.mixtures(arch)):
                return super().forward(x)  # type: ignore[misc]
        selected = self.descriptions(self.space.validate(arch))
        with selecting((self.shared[path], nodes) for path, nodes in selected.items()):
            return super().forward(x)  # type: ignore[misc]

    def mixtures(self, arch: Relaxed) -> list[tuple[SharedDAGCell, Mixture]]:
        """Each shared cell with the rows of ``arch`` that weigh its edges."""
        out = []
        for path, rows in self.edge_decisions().items():
            cell = self.shared[path]
            index = torch.as_tensor(rows, device=arch.weights.device)
            weights = arch.weights.index_select(0, index)[:, : len(cell.ops)]
            out.append((cell, Mixture(weights, None if arch.index is None else arch.index[list(rows)])))
        return out

    def child_tensor(self, arch: Architecture, key: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        for path, nodes in self.descriptions(arch).items():
            match = re.fullmatch(re.escape(path) + r"\.edges\.(\d+)\.(.+)", key)
            if match:
                edge, op = self.shared[path].path(nodes)[int(match.group(1))]
                return state.get(f"{path}.edges.{edge}.{op}.{match.group(2)}")
        return state.get(key)


# ---------------------------------------------------------------------- factory and weight inheritance
def build_supernet(space: SearchSpace, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
    """The super-network of ``space``.

    ``model_args`` are the space's own model arguments (as for ``space.build``; unknown keys raise
    :class:`~nasforge.errors.ConfigError` naming the key) plus the :class:`SupernetOptions`
    ``shared_affine`` and ``running_stats``. A space without a super-network raises
    :class:`~nasforge.errors.NasforgeError` listing those that have one.
    """
    entry = SUPERNETS.get(space.name)
    option_names = {f.name for f in fields(SupernetOptions)}
    options = build_config(SupernetOptions, {k: v for k, v in model_args.items() if k in option_names}, "supernet")
    args = build_config(
        entry.capabilities["model_args"], {k: v for k, v in model_args.items() if k not in option_names}, "model"
    )
    net = entry.factory(space, args, num_classes=num_classes, in_channels=in_channels, options=options)
    if not options.running_stats:
        batch_statistics_only(net)
    return net


def batch_statistics_only(model: nn.Module) -> None:
    """Make every batch norm of ``model`` normalise with the current batch's statistics, also in eval mode."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None


def child_state_dict(
    supernet: nn.Module, arch: Architecture, child: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """A state dict for ``space.build(arch, ...)`` (or ``child``) holding the super-network's weights.

    Entries the super-network does not keep (batch-norm scale and shift of operations when
    ``shared_affine`` is off, running statistics when ``running_stats`` is off) keep the fixed
    network's initial values: scale 1, shift 0, mean 0, variance 1, which is what the super-network
    computes for the first two. Any other entry without a counterpart is an error.
    """
    if not isinstance(supernet, Supernet):
        raise TypeError(f"{type(supernet).__name__} is not a super-network")
    child = child if child is not None else supernet.build_child(arch)
    state = supernet.state_dict()
    out, fresh = {}, 0
    for key, initial in child.state_dict().items():
        value = supernet.child_tensor(arch, key, state)
        if value is None:
            if not isinstance(child.get_submodule(key.rpartition(".")[0]), _BatchNorm):
                raise KeyError(f"the super-network has no weights for the child's {key!r}")
            value, fresh = initial, fresh + 1
        elif value.shape != initial.shape:
            raise ValueError(f"{key!r}: super-network shape {tuple(value.shape)}, child {tuple(initial.shape)}")
        out[key] = value.detach().clone()
    log.debug("child of %s: %d tensors inherited, %d batch-norm entries initial", arch, len(out) - fresh, fresh)
    return out


def extract_child(supernet: nn.Module, arch: Architecture) -> nn.Module:
    """The fixed network of ``arch`` with the weights it inherits from ``supernet``."""
    if not isinstance(supernet, Supernet):
        raise TypeError(f"{type(supernet).__name__} is not a super-network")
    child = supernet.build_child(arch)
    child.load_state_dict(child_state_dict(supernet, arch, child))
    return child


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate every batch norm's running statistics as the plain average over ``batches``.

    For a child inherited from a super-network without running statistics: after it, the child in
    eval mode normalises like the super-network does on data like ``batches``. Only the batch norms
    are in training mode meanwhile, so that dropout, drop-path and auxiliary heads do not disturb the
    statistics. Other weights do not change; the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for x in batches:
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()
