"""Training speed of nasforge's networks against the reference implementations, side by side in one process.

    taskset -c 0 python benchmarks/reference_speed.py --threads 1     # and --threads 2 on an idle machine

The references are read at run time from git snapshots (never copied into this repository): NAS-Bench-201's
``TinyNetwork`` from AutoDL-Projects (xautodl/models/cell_infers/, cell_operations.py) and DARTS' ``NetworkCIFAR``
(cnn/model.py, operations.py, genotypes.py). ``git show`` writes them to ``--ref-dir`` (outside the repository) and
they are imported from there, with torchvision stubbed (DARTS' utils.py imports it but the networks do not use it).

Both networks of a pair are built for the same genotype and size and get the same inputs (batch of random 32x32x3
images, random labels) and the same optimiser settings (SGD, momentum 0.9, weight decay 3e-4, gradient clipping at
5, cross-entropy): the reference by the plain step of its own training scripts, ours by
:class:`nasforge.train.loop.Stepper` with the default :class:`TrainConfig`. Measurements alternate (reference,
ours, reference, ...), and each side's figure is the median over ``--repeats`` measurements of ``--steps`` steps,
so that drift of the machine's load affects both alike; the ratio is the median of the ratios of
each measurement of ours to the reference's just before it. Before timing, our network is given the reference's
weights (the parameters correspond one to one) and the two outputs are compared in eval mode: ``max|diff|``
shows that both compute the same function. One line per network.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import nasforge as nf
from nasforge.ops import cell_ops
from nasforge.ops.cell_ops import DAGCell
from nasforge.ops.measure import count_params
from nasforge.train.loop import Stepper, TrainConfig

MIRROR = Path("/work/.mirror")
NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
NB201_ALL3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
AUTODL_FILES = ("xautodl/models/cell_operations.py", "xautodl/models/cell_infers/cells.py",
                "xautodl/models/cell_infers/tiny_network.py")
DARTS_FILES = ("cnn/model.py", "cnn/operations.py", "cnn/genotypes.py", "cnn/utils.py")


def git_dir(path: Path) -> Path:
    """The git directory of a snapshot: the path itself (bare) or its ``.git``."""
    return path / ".git" if (path / ".git").is_dir() else path


def extract(repo: Path, files: tuple[str, ...], dest: Path, strip: str = "") -> None:
    """Write ``files`` at the snapshot's HEAD under ``dest`` (minus the prefix ``strip``)."""
    for name in files:
        text = subprocess.run(["git", "--git-dir", str(git_dir(repo)), "show", f"HEAD:{name}"], check=True,
                              capture_output=True, text=True).stdout
        target = dest / name[len(strip):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def stub_torchvision() -> None:
    """DARTS' utils.py imports torchvision for its data transforms; the networks need none of it."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")  # type: ignore[attr-defined]
        tv.datasets = types.ModuleType("torchvision.datasets")  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                            "torchvision.datasets": tv.datasets})


class NB201Structure:
    """The parts of xautodl's ``CellStructure`` that ``InferCell`` reads (``len`` counts the input node)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = [tuple((op.split("~")[0], int(op.split("~")[1])) for op in node.strip("|").split("|"))
                      for node in text.split("+")]

    def __len__(self) -> int:
        return len(self.nodes) + 1

    def __getitem__(self, index: int) -> tuple[tuple[str, int], ...]:
        return self.nodes[index]

    def tostr(self) -> str:
        return self.text


def load_references(ref_dir: Path, autodl: Path, darts: Path) -> tuple[Any, Any]:
    """Import xautodl's ``TinyNetwork`` and DARTS' ``model`` module from ``ref_dir``."""
    extract(autodl, AUTODL_FILES, ref_dir / "autodl")
    for pkg in ("xautodl", "xautodl/models", "xautodl/models/cell_infers"):
        (ref_dir / "autodl" / pkg / "__init__.py").write_text("")  # empty: only the network modules are needed
    extract(darts, DARTS_FILES, ref_dir / "darts", strip="cnn/")
    stub_torchvision()
    sys.path[:0] = [str(ref_dir / "autodl"), str(ref_dir / "darts")]
    import model as darts_model  # type: ignore[import-not-found]
    from xautodl.models.cell_infers.tiny_network import TinyNetwork  # type: ignore[import-not-found]
    return TinyNetwork, darts_model


def copy_weights(src: nn.Module, dst: nn.Module) -> bool:
    """Give ``dst`` the parameters and buffers of ``src``, matched in order; False when they do not correspond."""
    a, b = list(src.state_dict().values()), list(dst.state_dict().values())
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return False
    with torch.no_grad():
        for x, y in zip(a, b):
            y.copy_(x)
    return True


def logits_of(output: Any, index: int) -> torch.Tensor:
    return output[index] if isinstance(output, (tuple, list)) else output


def reference_step(model: nn.Module, config: TrainConfig, logits_index: int) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                          float]:
    """The step of the references' own training scripts (DARTS train.py, AutoDL procedures/funcs.py)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    criterion = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = criterion(logits_of(model(x), logits_index), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        return loss.item()

    return step


def our_step(model: nn.Module, config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], float]:
    stepper = Stepper(model, config, steps_per_epoch=10_000, device=torch.device("cpu"))
    return lambda x, y: stepper.step(x, y)[0]


def images_per_s(step: Callable[[torch.Tensor, torch.Tensor], float], x: torch.Tensor, y: torch.Tensor,
                 steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return steps * len(y) / (time.perf_counter() - start)


def compare(label: str, ref: nn.Module, ours: nn.Module, ref_logits: int, args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen)
    same = copy_weights(ref, ours)
    diff = "n/a"
    if same:
        ref.eval(), ours.eval()
        with torch.no_grad():
            diff = f"{(logits_of(ref(x), ref_logits) - logits_of(ours(x), 0)).abs().max().item():.1e}"
    ref.train(), ours.train()
    config = TrainConfig(cpu_bf16=args.bf16, channels_last="channels-last" not in args.without)
    if "shared-relu" in args.without:
        for module in ours.modules():
            if isinstance(module, DAGCell):
                module.shared_relu = set()
    if "dense-cat" in args.without:
        cell_ops.channel_cat = lambda parts: torch.cat(list(parts), dim=1)  # type: ignore[assignment]
    start = time.perf_counter()
    steps = {"ref": reference_step(ref, config, ref_logits), "ours": our_step(ours, config)}
    for name in ("ref", "ours"):
        for _ in range(args.warmup):
            steps[name](x, y)
    setup = time.perf_counter() - start
    speeds: dict[str, list[float]] = {"ref": [], "ours": []}
    for _ in range(args.repeats):
        for name in ("ref", "ours"):
            speeds[name].append(images_per_s(steps[name], x, y, args.steps))
    r, o = statistics.median(speeds["ref"]), statistics.median(speeds["ours"])
    # each measurement of ours against the reference's just before it: robust to the load changing
    ratio = statistics.median(b / a for a, b in zip(speeds["ref"], speeds["ours"]))
    off = (f", without {','.join(sorted(args.without))}" if args.without else "") + (", bf16" if args.bf16 else "")
    print(f"{label}{off}: params ref {count_params(ref):,} ours {count_params(ours):,}; images/s ref {r:.1f} ours {o:.1f} "
          f"ratio {ratio:.2f}x (batch {args.batch}, {args.threads} thread(s), median of {args.repeats}x{args.steps} "
          f"steps, warm-up {setup:.1f} s, max|diff| of eval logits {diff}, load {os.getloadavg()[0]:.2f})",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="steps per measurement")
    p.add_argument("--repeats", type=int, default=11,
                   help="measurements per side, alternating; the medians count (the ratio: of the paired ratios)")
    p.add_argument("--bf16", action="store_true", help="ours with TrainConfig.cpu_bf16 (bfloat16 autocast)")
    p.add_argument("--without", type=lambda v: set(v.split(",")), default=set(),
                   help="switch speed-ups of ours off, to see what each contributes: comma-separated of "
                        "channels-last, shared-relu, dense-cat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    p.add_argument("--ref-dir", type=Path, default=Path("/tmp/nasforge-ref"), help="scratch folder for the references")
    p.add_argument("--autodl", type=Path, default=MIRROR / "D-X-Y+AutoDL-Projects" / "repo")
    p.add_argument("--darts", type=Path, default=MIRROR / "quark0+darts" / "repo")
    p.add_argument("--nets", default="nb201-best,nb201-all3x3,darts-v2",
                   help="comma-separated: nb201-best, nb201-all3x3, darts-v2, darts-v2-c36")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    TinyNetwork, darts_model = load_references(args.ref_dir, args.autodl, args.darts)
    import genotypes  # type: ignore[import-not-found]  # DARTS', next to its model.py

    nb201, darts = nf.create_space("nb201"), nf.create_space("darts")
    print(f"# torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}", flush=True)
    for name in args.nets.split(","):
        torch.manual_seed(0)
        if name.startswith("nb201"):
            text = NB201_BEST if name == "nb201-best" else NB201_ALL3
            ref = TinyNetwork(16, 5, NB201Structure(text), 10)
            ours = nb201.build(nb201.parse(text), num_classes=10, in_channels=3, C=16, N=5)
            compare(f"{name} (C=16, N=5)", ref, ours, 1, args)
        else:
            C, layers = (36, 20) if name == "darts-v2-c36" else (16, 8)
            with contextlib.redirect_stdout(io.StringIO()):  # DARTS' Cell prints its channel counts
                ref = darts_model.NetworkCIFAR(C, 10, layers, False, genotypes.DARTS_V2)
            ref.drop_path_prob = 0.0
            ours = darts.build(darts.parse(DARTS_V2), num_classes=10, in_channels=3, C=C, layers=layers)
            compare(f"{name} ({layers} cells, C={C})", ref, ours, 0, args)


if __name__ == "__main__":
    main()
