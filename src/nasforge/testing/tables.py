"""Fake benchmark tables in the NAS-Bench-201 CSV format, made by code (tests need no download)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..spaces.nb201 import NB201Space

COLUMNS = ("arch", "val_acc_200", "test_acc_200", "val_acc_12", "test_acc_12",
           "test_acc_200_one_seed", "test_acc_12_one_seed")

# A plausible quality per operation (none < pool < skip < 1x1 < 3x3): enough structure for a search to learn.
_OP_QUALITY = np.array([0.0, 0.55, 0.7, 0.85, 0.45])


def fake_nb201_rows(seed: int = 0) -> list[tuple]:
    """All 15,625 NB201 cells with synthetic accuracies (percent) that depend on their operations."""
    space = NB201Space()
    rng = np.random.default_rng(seed)
    rows = []
    for arch in space.enumerate():
        q = _OP_QUALITY[list(arch.choices)]
        # The edges into the output node matter most; a cell with no path to the output is poor.
        score = 0.5 * q[3:].mean() + 0.3 * q[:3].mean() + 0.2 * q.max()
        base = 40.0 + 52.0 * score
        val200 = base + rng.normal(0, 0.6)
        test200 = val200 + 2.5 + rng.normal(0, 0.3)
        val12 = 0.85 * base + rng.normal(0, 1.0)
        test12 = val12 + 4.0 + rng.normal(0, 0.5)
        rows.append((str(arch), val200, test200, val12, test12, test200 + rng.normal(0, 0.4), test12))
    return rows


def write_nb201_table(path: str | Path, seed: int = 0, rows: list[tuple] | None = None) -> Path:
    """Write a complete fake table (or the given rows) to ``path``; returns the path."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows if rows is not None else fake_nb201_rows(seed):
            writer.writerow([row[0], *(f"{v:.4f}" if isinstance(v, float) else v for v in row[1:])])
    return path


# --------------------------------------------------------------------------- stand-in benchmarks
# Tables that stand in for NAS-Bench-201-format benchmarks we do not have (other data sets rank the
# same cells differently): their objective ``val_acc_200`` comes from a seeded generator or from
# another column of a real table. Used by benchmarks/nb201_sample_efficiency.py.

_NONE, _POOL = 0, 4


def nb201_connected(choices: tuple[int, ...]) -> bool:
    """Whether the cell's output node is reachable from its input through edges other than ``none``."""
    e = [c != _NONE for c in choices]  # edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)
    n1 = e[0]
    n2 = e[1] or (n1 and e[2])
    return e[3] or (n1 and e[4]) or (n2 and e[5])


def synthetic_nb201_rows(seed: int, *, pairwise: float = 0.5, noise: float = 0.05,
                         favour_none_pool: bool = False) -> list[tuple]:
    """All 15,625 cells with accuracies from additive and pairwise operation effects plus noise.

    A cell's latent quality is a sum of per-(edge, operation) effects (an operation quality shared by
    the edges, scaled per edge, plus per-edge deviations) and of per-(edge pair, operation pair)
    interactions of scale ``pairwise``; accuracy saturates in it (``93 - 8 exp(-z)`` of the standardised
    quality ``z``), so the best cells are many near-ties, separated by measurement ``noise`` (percent).
    Cells whose output is disconnected score about 10 %, as in NAS-Bench-201. ``favour_none_pool``
    makes ``none`` and average pooling the best operations on some edges, so the best cells contain them.
    """
    rng = np.random.default_rng(seed)
    n_edges, n_ops = 6, 5
    op_quality = rng.normal(0.0, 1.0, n_ops)
    main = rng.uniform(0.5, 1.5, n_edges)[:, None] * op_quality[None, :] + rng.normal(0.0, 0.5, (n_edges, n_ops))
    if favour_none_pool:
        for e in rng.choice(n_edges, 3, replace=False):
            main[e, rng.choice([_NONE, _POOL])] = main[e].max() + 0.5
    pairs = [(a, b) for a in range(n_edges) for b in range(a + 1, n_edges)]
    inter = rng.normal(0.0, pairwise, (len(pairs), n_ops, n_ops))
    cells = np.array(list(np.ndindex(*(n_ops,) * n_edges)))
    f = main[np.arange(n_edges)[None, :], cells].sum(1)
    for p, (a, b) in enumerate(pairs):
        f += inter[p, cells[:, a], cells[:, b]]
    connected = np.array([nb201_connected(tuple(c)) for c in cells])
    z = (f - f[connected].mean()) / f[connected].std()
    acc = np.where(connected, 93.0 - 8.0 * np.exp(-np.clip(z, -3.0, None)), 10.0)
    val = acc - 2.5 + rng.normal(0.0, noise, len(acc))
    test = acc + rng.normal(0.0, 0.1, len(acc))
    val12 = 0.9 * val + rng.normal(0.0, 0.5, len(acc))
    space = NB201Space()
    return [(space.to_string(tuple(int(x) for x in c)), float(v), float(t), float(v12), float(v12 + 3.0),
             float(t + rng.normal(0.0, 0.2)), float(v12 + 3.0)) for c, v, t, v12 in zip(cells, val, test, val12)]


def read_nb201_rows(path: str | Path) -> list[tuple]:
    """The rows of a NAS-Bench-201-format CSV, in :data:`COLUMNS` order."""
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        return [(r["arch"], *(float(r[c]) for c in COLUMNS[1:])) for r in reader]


def with_objective(rows: list[tuple], column: str) -> list[tuple]:
    """The rows with ``column`` as the objective (copied into ``val_acc_200``): another ranking of the cells."""
    i = COLUMNS.index(column)
    return [(r[0], r[i], *r[2:]) for r in rows]


def with_isolated_optimum(rows: list[tuple], seed: int, margin: float = 0.2) -> list[tuple]:
    """The rows with a new optimum: of the cells ranked between the top 2 % and 5 %, one with the fewest
    one-edge neighbours in the top 5 % (a random one of those), raised ``margin`` above the best: a lone
    peak away from the other good cells."""
    space = NB201Space()
    val = np.array([r[1] for r in rows])
    index = {r[0]: i for i, r in enumerate(rows)}
    order = np.argsort(-val)
    rank = np.empty(len(val), dtype=int)
    rank[order] = np.arange(len(val))
    lo, hi = int(0.02 * len(val)), int(0.05 * len(val))
    middle = order[lo:hi]
    good = np.array([sum(rank[index[str(nb)]] < hi for nb in space.neighbours(space.parse(rows[i][0])))
                     for i in middle])
    i = int(np.random.default_rng(seed).choice(middle[good == good.min()]))
    out = list(rows)
    out[i] = (rows[i][0], float(val.max() + margin), *rows[i][2:])
    return out
