"""EDNAS policy vectors (Lee, Kim & Han: "Efficient Decoupled NAS by Structure and Operation Sampling")."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..objectives import MnasConfig
from ..registry import STRATEGIES
from .policies import REWARD_NORMS, PolicyStrategy, PolicyVectors


@dataclass
class EdnasConfig(MnasConfig):
    """Policy-vector parameters, chosen for budgets of a few hundred evaluations.

    EDNAS trains its vectors with Adam at lr 3.5e-4 over 300 epochs of minibatch rewards; a black-box
    search has only tens of updates, so the step is larger: Adam moves each logit by about ``lr`` per
    update whatever the reward scale, so 30 updates can shift a logit by a few units, enough to
    concentrate the policy without collapsing it. Rewards are normalised (``reward_norm``).
    """

    lr: float = 0.2  # Adam step size on the logits
    batch_size: int = 3  # architectures per policy update (the baseline keeps small batches stable)
    baseline_decay: float = 0.9  # per reward: the baseline averages the last ~10 normalised rewards
    entropy_weight: float = 0.0  # bonus on the policy's entropy
    reward_norm: str = "rank"  # rank | zscore | none (see PolicyGradient)
    avoid_repeats: bool = True  # re-draw proposals of networks already proposed (a repeat costs a query)
    warmup: int = 0  # first results that do not update the policy (weight sharing: train all operations first)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.lr <= 0 or self.warmup < 0:
            raise ValueError("need batch_size >= 1, lr > 0 and warmup >= 0")
        if self.reward_norm not in REWARD_NORMS:
            raise ValueError(f"reward_norm must be one of {', '.join(REWARD_NORMS)}")
        self.check_mnas()


@STRATEGIES.register("ednas", guided=True, batch=True, observable=True, paper="Lee, Kim & Han (EDNAS)",
                     oneshot={"lr": 3.5e-4})  # with weight sharing (a policy update every few steps): EDNAS' own step size
class Ednas(PolicyStrategy):
    """EDNAS: a softmax policy vector per structure and operation decision, learnt by REINFORCE.

    EDNAS samples a structure (each node's input-edge combination) and then the operations of the
    chosen edges; with the space's ``active`` mask that is the same as sampling every vector and
    ignoring the operations of unchosen edges, which is what this does. The paper leaves the baseline's
    decay and the entropy term open; we use no entropy term (it names none) and a short moving average.
    EDNAS derives its final cell by sampling 100 and keeping the best one-shot reward; in a black-box
    search the best evaluated architecture is the result instead. ``observe()`` returns the vectors
    after softmax, as in the paper's Figure 4.
    """

    Config = EdnasConfig

    def make_policy(self, generator: torch.Generator) -> PolicyVectors:
        return PolicyVectors(self.space.decisions)
