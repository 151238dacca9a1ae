"""One picture of a verification result: the ROC curve and the two distance histograms."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from facetwin.core.paths import atomic_write_bytes
from facetwin.evaluation.metrics import roc


def _tar_floor(far: np.ndarray, tar: np.ndarray, floor: float) -> float:
    """A lower y limit that shows the differences between good models: the TAR at the smallest plotted FAR,
    less a margin, rounded down to a tenth of a percent point (0 for weak models)."""
    low = float(tar[np.searchsorted(far, floor, side="left")]) if far[-1] >= floor else 0.0
    return max(0.0, np.floor((low - 0.02) * 1000) / 1000)


def save_report_plot(
    path: str | Path, distances, same, threshold: float, title: str, summary: dict | None = None
) -> None:
    """Write a PNG: ROC with FAR on a log axis (left), same/different distance histograms (right).

    ``summary`` (an evaluation result: ``auc``, ``eer``, ``tar_at_far``) is printed on the ROC.
    """
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
    left.set_ylim(_tar_floor(far, tar, floor), 1.001)
    left.set_xlabel("false accept rate (log)")
    left.set_ylabel("true accept rate")
    left.set_title("ROC")
    left.grid(True, which="both", alpha=0.3)
    if summary:
        tar_at = summary.get("tar_at_far", {})
        lines = [f"AUC {summary['auc']:.4f}", f"EER {summary['eer'] * 100:.2f} %"]
        lines += [f"TAR@FAR {float(k) * 100:g} %: {v * 100:.2f} %" for k, v in tar_at.items()]
        left.text(
            0.97,
            0.05,
            "\n".join(lines),
            transform=left.transAxes,
            ha="right",
            va="bottom",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
        )
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
