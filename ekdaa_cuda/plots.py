"""Figures for ``ekdaa_cuda.reproduce``: learning curves (paper Fig. 3), t-SNE of the last hidden
layer (Fig. 4), update/feedback alignment over training, and one run's learning curves
(``curves.png`` of ``ekdaa-cuda train --out``).

matplotlib (Agg backend, no display needed) and scikit-learn are imported only when a figure
is drawn: ``pip install "ekdaa-cuda[plot]"``. Every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .training import atomic_write_bytes


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install matplotlib scikit-learn "
                          "(or the package's [plot] extra)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    """Write a figure atomically (temporary file + rename) and close it."""
    path = Path(path)

    def write(f):
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")

    atomic_write_bytes(path, write)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _color(i: int, n: int):
    """Distinct colours: tab10 for up to 10 series, tab20 beyond."""
    import matplotlib

    return matplotlib.colormaps["tab10" if n <= 10 else "tab20"](i % (10 if n <= 10 else 20))


def learning_curves(histories: dict, path, title: str = "") -> Path:
    """Train (dashed) and test (solid) accuracy per epoch, one colour per method, mean ± std over
    seeds as a band. ``histories``: {method: [per-seed list of training.train history records]}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for i, (method, runs) in enumerate(histories.items()):
        color = _color(i, len(histories))
        n = min(len(h) for h in runs)
        epochs = np.arange(1, n + 1)
        for ax, key, style in ((axes[0], "train_accuracy", "--"), (axes[1], "test_accuracy", "-")):
            acc = 100 * np.array([[r[key] for r in h[:n]] for h in runs])
            mean, std = acc.mean(0), acc.std(0)
            ax.plot(epochs, mean, style, color=color, marker="o" if n < 15 else None, label=f"{method} ({len(runs)})")
            if len(runs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes, ("train (running, with dropout)", "test")):
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} accuracy")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="method (seeds)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def run_curves(history: list, path, title: str = "") -> Path:
    """One run's learning curves: train and test loss (left) and accuracy (right) per epoch, from
    ``training.train``'s history records. The train figures are running means over the epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    marker = "o" if len(epochs) < 30 else None
    for ax, key, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "accuracy", "accuracy (%)")):
        scale = 100 if key == "accuracy" else 1
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in history], "--", marker=marker, label="train (running)")
        ax.plot(epochs, [scale * r[f"test_{key}"] for r in history], "-", marker=marker, label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def tsne_embed(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, perplexity 30, 1000 iterations, PCA init) of [N, ...] features."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:  # pragma: no cover
        raise ImportError("t-SNE needs scikit-learn: pip install scikit-learn") from exc
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    perplexity = min(perplexity, (len(x) - 1) / 3)  # sklearn requires perplexity < n_samples
    kwargs = {"n_components": 2, "perplexity": perplexity, "init": "pca", "random_state": seed}
    try:
        return TSNE(max_iter=1000, **kwargs).fit_transform(x)
    except TypeError:  # scikit-learn < 1.5 calls it n_iter
        return TSNE(n_iter=1000, **kwargs).fit_transform(x)


def tsne_grid(snapshots: dict, path, title: str = "", perplexity: float = 30.0, seed: int = 0) -> Path:
    """One t-SNE panel per epoch. ``snapshots``: {epoch: (features [N, ...], labels [N], test accuracy
    or None)}; points coloured by class."""
    plt = _pyplot()
    epochs = sorted(snapshots)
    cols = min(len(epochs), 3)
    rows = -(-len(epochs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, epoch in zip(axes.ravel(), epochs):
        features, labels, acc = (*snapshots[epoch], None)[:3]
        emb = tsne_embed(features, perplexity, seed)
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=labels, cmap="tab10", s=4, vmin=0, vmax=9)
        ax.set_title(f"epoch {epoch}" + ("" if acc is None else f" (test acc {100 * acc:.1f}%)"), fontsize=10)
    fig.colorbar(sc, ax=axes.ravel().tolist(), ticks=range(10), shrink=0.6, label="class")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def alignment_plot(records: dict, path, title: str = "") -> Path:
    """Per layer: angle (degrees) between each method's ΔW and the true gradient over training steps
    (solid), and between its error weights and Wᵀ (dotted, methods that have them). ``records``:
    {method: [{"step": s, "<layer>.update_angle": deg, "<layer>.error_weight_angle": deg, ...}]}."""
    plt = _pyplot()
    layers = []
    for rec in records.values():
        for key in rec[0]:
            name = key.split(".")[0]
            if key.endswith(".update_angle") and name not in layers:
                layers.append(name)
    cols = min(len(layers), 3)
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(layers):]:
        ax.set_axis_off()
    for ax, layer in zip(axes.ravel(), layers):
        for i, (method, rec) in enumerate(records.items()):
            steps = [r["step"] for r in rec]
            color = _color(i, len(records))
            if f"{layer}.update_angle" in rec[0]:
                ax.plot(steps, [r[f"{layer}.update_angle"] for r in rec], "-", color=color, label=f"{method}: ΔW vs ∇")
            if f"{layer}.error_weight_angle" in rec[0] and method != "bp":
                ax.plot(steps, [r[f"{layer}.error_weight_angle"] for r in rec], ":", color=color,
                        label=f"{method}: E vs Wᵀ")
        ax.axhline(90, color="gray", lw=0.8)
        ax.set_title(layer)
        ax.set_ylim(0, 180)
        ax.set_xlabel("step")
        ax.set_ylabel("angle (degrees)")
        ax.grid(alpha=0.3)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(labels) // 4)))
    if title:
        fig.suptitle(title)
    return _save(fig, path)
