"""PNG figures beside a card: confusion matrix and learning curves."""
import matplotlib

matplotlib.use("Agg")  # runs write files; no display is needed or assumed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import confusion_matrix

from .labels import CLASS_NAMES, N_CLASSES


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
