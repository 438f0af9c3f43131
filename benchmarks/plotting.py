"""Line plots for the learning benchmarks (matplotlib, from the ``bench`` and ``test`` extras).

Every benchmark writes its JSON first; the PNG is drawn from it when
matplotlib is installed, as ``benchmarks/load.py`` does, so a bare install
still gets every number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    series: Mapping[str, Sequence[float]]  # label -> y values at the shared x positions
    marker_x: float | None = None  # a vertical line (the drift, a new pass)
    marker: str = ""


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def curves(path: Path, xs: Sequence[float], panels: Sequence[Panel], title: str, xlabel: str) -> bool:
    """Draw one panel per entry side by side into ``path``; False when matplotlib is not installed."""
    if not available():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for index, (label, ys) in enumerate(panel.series.items()):
            ax.plot(xs, ys, label=label, color=f"C{index}", linewidth=1.6)
        if panel.marker_x is not None:
            ax.axvline(panel.marker_x, color="grey", linestyle="--", linewidth=1)
            ax.annotate(
                panel.marker,
                (panel.marker_x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -14),
                textcoords="offset points",
                color="grey",
            )
        ax.set_title(panel.title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
