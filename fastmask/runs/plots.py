"""PNG figures beside a card: confusion matrix and learning curves."""
import matplotlib

matplotlib.use("Agg")  # runs write files; no display is needed or assumed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import confusion_matrix


from fastmask.labels import CLASS_NAMES, describe, N_CLASSES


def save_confusion(y, p, path, title="validation"):
    cm = confusion_matrix(y, p, labels=range(N_CLASSES))
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(N_CLASSES), [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)], rotation=90, fontsize=7)
    ax.set_yticks(range(N_CLASSES), [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)], fontsize=7)
    for i, j in zip(*np.nonzero(cm)):
        ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=6,
                color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"confusion ({title}, {len(y)} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_curves(history, path):
    """Loss and validation macro F1 per epoch from a history.csv frame."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for col in ("train_loss", "valid_loss"):
        if col in history:
            a.plot(history["epoch"] + 1, history[col], marker="o", label=col)
    a.set_xlabel("epoch"), a.legend(), a.set_title("loss")
    for col in ("macro_f1", "accuracy"):
        if col in history:
            b.plot(history["epoch"] + 1, history[col], marker="o", label=col)
    b.set_xlabel("epoch"), b.legend(), b.set_title("validation")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def top_losses(vp, k=16):
    """The `k` rows of a valid_preds frame (label, pred, p0..p17) whose true label got the lowest
    probability, worst first, with `p_true` and `p_pred` added."""
    probs = vp[[f"p{i}" for i in range(N_CLASSES)]].to_numpy(float)
    idx = np.arange(len(vp))
    out = vp.assign(p_true=probs[idx, vp["label"].to_numpy(int)], p_pred=probs[idx, vp["pred"].to_numpy(int)])
    return out.sort_values(["p_true", "path"], kind="stable").head(k) if len(out) else pd.DataFrame()


def save_top_losses(vp, path, k=16, cols=4):
    """A grid of the validation images the model got most wrong (lowest probability of the true label),
    each titled with the true and predicted class in words. No learner needed: images load with PIL.
    Returns how many images the grid shows (0: nothing written)."""

    worst = top_losses(vp, k)
    if not len(worst):
        return 0
    rows = -(-len(worst) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, worst.itertuples()):
        try:
            with Image.open(r.path) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
        except (OSError, ValueError):
            ax.text(0.5, 0.5, "image missing", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_title(f"true: {describe(r.label)}\npred: {describe(r.pred)}\n"
                     f"p(true) {r.p_true:.2f}  p(pred) {r.p_pred:.2f}"
                     + (f"  person {r.person}" if "person" in worst else ""), fontsize=7)
    fig.suptitle("top losses (validation): lowest probability of the true label", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return len(worst)
