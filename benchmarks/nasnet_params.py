"""Parameter counts of the published NASNet-convention cells in the `nasnet` space's CIFAR network.

Usage: python benchmarks/nasnet_params.py [--C 36] [--layers 20] [--reference DARTS_CNN_DIR]

One line per genotype of :data:`nasforge.spaces.nasnet.PUBLISHED`: its parameters without and with the auxiliary
head (10 classes). With ``--reference`` (the ``cnn`` folder of a checkout of quark0/darts) the same counts of
DARTS' own ``model.NetworkCIFAR`` follow on each line. That code needs only torch to build its network, but its
utils.py imports torchvision: an empty stand-in module is put on the path when torchvision is absent.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import sys
import tempfile
from pathlib import Path

import torch

import nasforge as nf
from nasforge.spaces.nasnet import PUBLISHED


def reference_counts(folder: Path, text: str, C: int, layers: int) -> tuple[int, int]:
    """Parameters of DARTS' NetworkCIFAR for a genotype string, auxiliary head off and on."""
    if str(folder) not in sys.path:
        try:
            import torchvision  # noqa: F401
        except ImportError:  # the reference's utils.py imports it; building the network does not use it
            stub = Path(tempfile.mkdtemp()) / "torchvision"
            stub.mkdir()
            (stub / "__init__.py").write_text("")
            (stub / "transforms.py").write_text("")
            sys.path.insert(0, str(stub.parent))
        sys.path.insert(0, str(folder))
    from genotypes import Genotype  # type: ignore[import-not-found]
    from model import NetworkCIFAR  # type: ignore[import-not-found]

    call = ast.parse(text, mode="eval").body
    assert isinstance(call, ast.Call)
    genotype = Genotype(**{kw.arg: ast.literal_eval(kw.value) for kw in call.keywords})
    out = []
    for aux in (False, True):
        with contextlib.redirect_stdout(io.StringIO()), torch.device("meta"):  # its Cell prints its widths
            net = NetworkCIFAR(C, 10, layers, aux, genotype)
        out.append(sum(p.numel() for p in net.parameters()))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--C", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--reference", type=Path, help="the cnn folder of quark0/darts")
    args = parser.parse_args()
    for name, (text, config) in PUBLISHED.items():
        space = nf.create_space("nasnet", **config)
        arch = space.parse(text)
        counts = []
        for aux in (False, True):
            with torch.device("meta"):
                model = space.build(arch, num_classes=10, C=args.C, layers=args.layers, auxiliary=aux)
            counts.append(sum(p.numel() for p in model.parameters()))
        line = f"{name} C={args.C} layers={args.layers} nasforge {counts[0]} {counts[1]}"
        if args.reference:
            ref = reference_counts(args.reference, text, args.C, args.layers)
            line += f" reference {ref[0]} {ref[1]} {'equal' if tuple(counts) == ref else 'DIFFERENT'}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
