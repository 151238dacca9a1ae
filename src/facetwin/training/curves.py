"""The paper's training curves: loss and accuracy per epoch, training and validation, as one PNG."""

from __future__ import annotations

import io
from pathlib import Path

from facetwin.core import paths


def plot_curves(history: list[dict], path: str | Path, title: str = "", kept_epoch: int | None = None) -> None:
    """Write ``curves.png``: left loss, right accuracy; epoch 0 is the untrained head (validation only);
    a dashed line marks the epoch whose weights were kept."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    trained = [h for h in history if h.get("epoch", 0) >= 1]
    for ax, key, label in ((axes[0], "loss", "loss (binary cross-entropy)"), (axes[1], "accuracy", "accuracy")):
        if trained:
            ax.plot([h["epoch"] for h in trained], [h[key] for h in trained], "o-", ms=3, label="training")
        val = [h for h in history if f"val_{key}" in h]
        if val:
            ax.plot([h["epoch"] for h in val], [h[f"val_{key}"] for h in val], "s-", ms=3, label="validation")
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="0.3", linestyle="--", linewidth=1, label=f"kept (epoch {kept_epoch})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    paths.atomic_write_bytes(path, buffer.getvalue())
