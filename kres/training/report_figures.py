"""The report's figures: the confusion matrix, a multi-label report's classes
and the contact sheet of the most confident mistakes, as PNGs
(`kres.training.report.write_report` writes them beside ``report.json``)."""

import os

import numpy as np

from kres import figures


def plot_confusion(matrix, class_names, path, *, title=""):
    """Draws a confusion matrix as a PNG: each row coloured by the share of the true
    class's examples (on a square-root scale), the counts written in the cells up to 20 classes; the
    figure grows with the classes (0.2 inch each) so that 100 names stay
    readable, up to 40 inches; beyond 150 classes the axes show class numbers."""
    plt = figures.pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = min(max(5.0, 0.2 * n + 2.5), 40.0)
    font = 9 if n <= 20 else 7
    fig, ax = plt.subplots(figsize=(side, side))
    from matplotlib.colors import PowerNorm

    # The square root's scale shows the small shares off the diagonal too.
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1),
                      interpolation="nearest")
    if n <= 150:
        ticks, names = range(n), [str(c) for c in class_names]
    else:
        ticks = range(0, n, -(-n // 40))
        names = [str(t) for t in ticks]
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for t in range(n):
            for p in range(n):
                if matrix[t, p]:
                    ax.text(p, t, str(int(matrix[t, p])), ha="center", va="center",
                            fontsize=font - 1, color="white" if shares[t, p] > 0.3 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(title or "confusion matrix")
    figures.save(fig, path)


def plot_classes(result, path, *, title=""):
    """Draws a multi-label report's classes as a PNG: each class's average precision
    and F1 at the threshold, side by side, worst average precision at the top; the
    figure grows with the classes (0.25 inch each) up to 40 inches."""
    plt = figures.pyplot()
    classes = sorted(result["classes"], key=lambda c: (c["average_precision"] or 0.0),
                     reverse=True)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(7, min(max(3.0, 0.25 * n + 1.5), 40.0)))
    y = np.arange(n)
    ax.barh(y + 0.2, [c["average_precision"] or 0.0 for c in classes], 0.4,
            label="average precision", color="tab:blue")
    ax.barh(y - 0.2, [c["f1"] for c in classes], 0.4,
            label=f"F1 at {result['threshold']:g}", color="tab:orange")
    ax.set_yticks(y, [f"{c['name']} ({c['support']})" for c in classes],
                  fontsize=9 if n <= 30 else 7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"mAP {result['map']:.3f}, micro F1 {result['micro_avg']['f1']:.3f}, "
                  f"exact {result['subset_accuracy']:.3f}")
    # Above the bars, which reach the right edge for the best classes.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
              frameon=False)
    ax.set_title(title or "classes", pad=20)
    figures.save(fig, path)


def plot_mistakes(mistakes, path, *, columns=8, title=""):
    """Draws the mistakes of a `report` as a contact sheet PNG: each image with its
    true class, the predicted class and its probability (and file name)."""
    plt = figures.pyplot()
    count = max(len(mistakes), 1)
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.3 * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes):
        image = m["image"]
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None,
                  vmin=0, vmax=255)
        label = f"true: {m['true']}\npred: {m['predicted']} {m['probability']:.2f}"
        if m.get("file"):
            label += "\n" + os.path.basename(m["file"])[:24]
        ax.set_title(label, fontsize=7)
    if not mistakes:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or "most confident mistakes", fontsize=9)
    figures.save(fig, path)
