"""REINFORCE with an LSTM controller (Zoph & Le, ICLR 2017; the controller ENAS reuses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..objectives import MnasConfig
from ..registry import STRATEGIES
from .policies import REWARD_NORMS, LSTMController, PolicyStrategy


@dataclass
class ReinforceConfig(MnasConfig):
    """Controller and REINFORCE parameters, chosen for budgets of a few hundred evaluations.

    Zoph & Le and ENAS train the controller for thousands of steps with Adam at lr 3.5e-4 to 6e-4; with
    a few hundred evaluations in batches of ``batch_size`` there are only tens of updates, so the step
    size is larger. Adam's steps do not depend on the reward scale, and rewards are normalised
    (``reward_norm``), so nothing here depends on the data set.
    """

    hidden: int = 64  # LSTM width (ENAS: 64)
    lr: float = 0.02  # Adam step size
    batch_size: int = 3  # m: architectures per policy update (the baseline keeps small batches stable)
    baseline_decay: float = 0.9  # per reward: the baseline averages the last ~10 normalised rewards
    entropy_weight: float = 0.01  # bonus on the entropy summed over decisions (advantages are ~0.3): keeps a
    # short search from settling early on one option of a decision (ENAS: 1e-4 over thousands of steps)
    tanh_constant: float = 2.5  # logits squashed to +-tanh_constant (ENAS); 0 disables
    temperature: float = 1.0  # logits divided by this before squashing
    reward_norm: str = "rank"  # rank | zscore | none (see PolicyGradient)
    avoid_repeats: bool = True  # re-draw proposals of networks already proposed (a repeat costs a query)
    warmup: int = 0  # first results that do not update the policy (weight sharing: train all operations first)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.batch_size < 1 or self.lr <= 0 or self.temperature <= 0 or self.warmup < 0:
            raise ValueError("need hidden >= 1, batch_size >= 1, lr > 0, temperature > 0 and warmup >= 0")
        if self.reward_norm not in REWARD_NORMS:
            raise ValueError(f"reward_norm must be one of {', '.join(REWARD_NORMS)}")
        self.check_mnas()


#: with weight sharing: ENAS' controller settings for its micro (cell) search: Adam at 3.5e-3 on batches of 20
#: children, entropy weight 1e-4, logits divided by 5 and squashed to +-1.1 (which also bounds how much the policy
#: can concentrate: a decision's favourite option keeps below ~70% of five)
ONESHOT: dict[str, Any] = {"lr": 3.5e-3, "batch_size": 20, "entropy_weight": 1e-4, "tanh_constant": 1.1,
                           "temperature": 5.0}


@STRATEGIES.register("reinforce", aliases=("rl", "enas"), guided=True, batch=True, observable=True,
                     paper="Zoph & Le 2017", oneshot=ONESHOT)
class Reinforce(PolicyStrategy):
    """REINFORCE: an LSTM controller samples the decisions; moving-average baseline, Adam."""

    Config = ReinforceConfig

    def make_policy(self, generator: torch.Generator) -> LSTMController:
        c = self.config
        return LSTMController(self.space.decisions, self.space.skip_links(), c.hidden, c.tanh_constant,
                              c.temperature, generator)
