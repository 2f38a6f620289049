"""Perturbation-based selection (Wang et al., ICLR 2021, "Rethinking architecture selection in differentiable NAS").

DARTS derives its answer from the magnitudes of the architecture weights, assuming that a large weight means an
operation the super-network relies on; that assumption fails (skip connections get large weights without being
what the network's accuracy depends on). Perturbation-based selection asks the trained super-network directly:

1. operations, edge by edge in a random order: remove each operation of the edge from the mixture in turn (its
   weight set to zero, the others kept) and score the super-network on validation data; keep the operation whose
   removal lowers the accuracy most, and fix the edge to it (one-hot) before the next edge;
2. topology, for spaces whose nodes choose their inputs (the ``darts`` space: two of the earlier nodes), node by
   node: remove each incoming edge in turn, keep the input option whose edges' removals lower the accuracy most,
   and drop the other edges.

It reads only the shared weights, so it is weight sharing on its own (no proxy, no retraining). It needs a
super-network trained as a mixture (``darts``); one trained one path at a time (``gdas``, ENAS) does not compute
a meaningful mixture. The paper also fine-tunes the network between decisions (the weights were trained for the
whole mixture, not for the partly fixed one each later decision is scored on); the ``decided`` callback of both
selections, called after each decision with the weights fixed so far, is where the caller does that
(``SupernetConfig.derive_tune_steps``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..spaces.base import SearchSpace

#: what a selection step records: the decision, the score before it, the scores with each option (operation
#: selection) or edge (input selection) removed, and the option kept
Step = dict[str, object]


def select_operations(space: SearchSpace, weights: torch.Tensor, edges: Sequence[int],
                      scores: Callable[[list[torch.Tensor]], list[float]], rng: np.random.Generator,
                      decided: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, list[Step]]:
    """Fix every operation decision of ``edges`` (in a random order from ``rng``) to the option whose removal
    from the mixture ``weights`` lowers the score most; ``scores`` gives the scores of several weightings at once
    (each edge's, so that a caller may split them, over data-parallel replicas say). Returns the weights with those rows one-hot, and the steps
    (each with the score before the edge is decided, ``base``, and with each option removed, ``removed``).

    Removing an option that computes nothing ("none") leaves the score as it is, so it is kept only where
    removing every other option would raise the score. Ties go to the first option. ``decided`` (if given) is
    called with the weights after each edge is fixed."""
    weights = weights.detach().clone()
    steps: list[Step] = []
    for d in rng.permutation(np.asarray(edges, dtype=int)).tolist():
        trials = []
        for k in range(space.decisions[d].n_choices):
            trial = weights.clone()
            trial[d, k] = 0.0
            trials.append(trial)
        base, *removed = scores([weights, *trials])
        kept = int(np.argmin(removed))
        weights[d] = 0.0
        weights[d, kept] = 1.0
        if decided is not None:
            decided(weights)
        steps.append({"decision": space.decisions[d].name, "base": base, "removed": removed,
                      "kept": space.decisions[d].label(kept)})
    return weights, steps


def select_inputs(space: SearchSpace, weights: torch.Tensor, governed: dict[int, list[list[int]]],
                  scores: Callable[[list[torch.Tensor]], list[float]],
                  decided: Callable[[torch.Tensor], None] | None = None
                  ) -> tuple[dict[int, int], torch.Tensor, list[Step]]:
    """For each structure decision (in the space's order), the option whose edges' removals lower the score most
    in total (``scores`` as in :func:`select_operations`); ``governed[s][c]`` lists the operation decisions (edges) option ``c`` of decision ``s`` activates.
    The edges the kept option does not activate are removed (rows zeroed) before the next decision is scored.
    Returns the options chosen, the weights after pruning and the steps; ``decided`` as in
    :func:`select_operations`."""
    weights = weights.detach().clone()
    chosen: dict[int, int] = {}
    steps: list[Step] = []
    for s, options in sorted(governed.items()):
        if len(options) < 2:  # nothing to choose (a first node's only pair of inputs)
            chosen[s] = 0
            continue
        removable = sorted({e for edges in options for e in edges})
        trials = []
        for e in removable:
            trial = weights.clone()
            trial[e] = 0.0
            trials.append(trial)
        base, *values = scores([weights, *trials])
        drops = {e: base - v for e, v in zip(removable, values)}
        kept = int(np.argmax([sum(drops[e] for e in edges) for edges in options]))  # ties: the first option
        for e in set(drops) - set(options[kept]):
            weights[e] = 0.0
        if decided is not None:
            decided(weights)
        chosen[s] = kept
        steps.append({"decision": space.decisions[s].name, "base": base,
                      "drops": {space.decisions[e].name: v for e, v in drops.items()},
                      "kept": space.decisions[s].label(kept)})
    return chosen, weights, steps
