"""One picture of a verification result: the ROC curve and the two distance histograms."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .metrics import roc
from .paths import atomic_write_bytes


def save_report_plot(path: str | Path, distances, same, threshold: float, title: str) -> None:
    """Write a PNG: ROC with FAR on a log axis (left), same/different distance histograms (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.asarray(distances, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    far, tar, _ = roc(d, s)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    floor = 1.0 / max(int((~s).sum()), 1)
    left.plot(np.maximum(far, floor / 2), tar, color="tab:blue")
    left.set_xscale("log")
    left.set_xlim(floor / 2, 1.0)
    left.set_ylim(0.0, 1.01)
    left.set_xlabel("false accept rate (log)")
    left.set_ylabel("true accept rate")
    left.set_title("ROC")
    left.grid(True, which="both", alpha=0.3)
    bins = np.linspace(d.min(), d.max(), 60)
    right.hist(d[s], bins=bins, alpha=0.6, color="tab:green", label=f"same person ({int(s.sum())})")
    right.hist(d[~s], bins=bins, alpha=0.6, color="tab:red", label=f"different people ({int((~s).sum())})")
    right.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    right.set_xlabel("distance")
    right.set_ylabel("pairs")
    right.set_title("distances")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
