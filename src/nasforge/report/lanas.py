"""The LaNAS tree, as a rich text tree and as a matplotlib figure.

Both read the plain-data description that :meth:`nasforge.strategies.lanas.LaNAS.observe` returns:
``{"nodes": [{"id", "parent", "depth", "side", "leaf", "left", "right", "count", "mean_reward",
"mean_rank"}, ...], "n_samples", ...}``, the root's parent None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.tree import Tree


def is_root(node: dict[str, Any]) -> bool:
    """Whether ``node`` is the root: no parent (runs recorded before 2026-12-04 give the root's parent as -1)."""
    return node["parent"] is None or node["parent"] < 0


def node_name(node: dict[str, Any]) -> str:
    """``root``, ``split 3`` or ``leaf 5`` with its side: what the tree figure and text call a node."""
    if is_root(node):
        return "root" if not node["leaf"] else "root (leaf)"
    kind = "leaf" if node["leaf"] else "split"
    return f"{kind} {node['id']} ({node['side']} of {node['parent']})"


def _label(node: dict[str, Any]) -> str:
    mean = "-" if node["mean_reward"] is None else f"{node['mean_reward']:.3f}"
    return f"{node_name(node)}: n={node['count']} mean reward={mean}"


def _children(node: dict[str, Any]) -> list[int]:
    return [] if node["leaf"] else [node["left"], node["right"]]


def rich_tree(description: dict[str, Any]) -> Tree:
    """A :class:`rich.tree.Tree` of the nodes, good (left) child first."""
    nodes = description["nodes"]
    title = (f"LaNAS tree: {description['n_samples']} samples, learnt from {description['n_learnt']}, "
             f"{sum(n['leaf'] for n in nodes)} leaves")
    root = Tree(title)

    def add(branch: Tree, node_id: int) -> None:
        node = nodes[node_id]
        style = "green" if node["side"] == "good" else "red" if node["side"] == "bad" else "bold"
        sub = branch.add(f"[{style}]{_label(node)}[/{style}]")
        for child in _children(node):
            add(sub, child)

    add(root, 0)
    return root


def layout(description: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """Node positions: leaves evenly spaced left to right, parents centred above their children."""
    nodes = description["nodes"]
    pos: dict[int, tuple[float, float]] = {}
    next_x = [0.0]

    def place(node_id: int) -> float:
        node = nodes[node_id]
        kids = _children(node)
        if kids:
            x = sum(place(k) for k in kids) / len(kids)
        else:
            x, next_x[0] = next_x[0], next_x[0] + 1.0
        pos[node_id] = (x, -float(node["depth"]))
        return x

    place(0)
    return pos


def plot_tree(description: dict[str, Any], path: str | Path) -> Path:
    """Draw the tree (node colour: mean reward; text: count and mean) into an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    nodes = description["nodes"]
    pos = layout(description)
    means = [n["mean_reward"] for n in nodes if n["mean_reward"] is not None]
    norm = colors.Normalize(min(means, default=0.0), max(means, default=1.0))
    width = max(x for x, _ in pos.values()) + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * width), 1.0 + 1.3 * (1 + max(n["depth"] for n in nodes))))
    for node in nodes:
        for side, child in zip(("good", "bad"), _children(node)):
            (x0, y0), (x1, y1) = pos[node["id"]], pos[child]
            ax.plot([x0, x1], [y0, y1], color="0.6", zorder=1)
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, side, fontsize=7, color="0.35", ha="center", va="center",
                    zorder=1, bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    for node in nodes:
        x, y = pos[node["id"]]
        shade = None if node["mean_reward"] is None else float(norm(node["mean_reward"]))
        colour = "0.85" if shade is None else cm.viridis(shade)
        mean = "-" if node["mean_reward"] is None else f"{node['mean_reward']:.2f}"
        name = "root" if is_root(node) else f"{'leaf' if node['leaf'] else 'split'} {node['id']}"
        ax.text(x, y, f"{name}\nn={node['count']}\n{mean}", ha="center", va="center", fontsize=8, zorder=2,
                color="white" if shade is not None and shade < 0.4 else "black",  # readable on dark viridis
                bbox={"boxstyle": "round", "facecolor": colour, "edgecolor": "0.3"})
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="mean reward")
    ax.set_title(f"LaNAS tree after {description['n_samples']} samples: each split's regressor sends the better "
                 "predicted architectures to its good (left) child; node text: name, samples n, mean reward")
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(min(y for _, y in pos.values()) - 0.6, 0.6)
    ax.axis("off")
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
