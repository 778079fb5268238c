"""card.md: what was tested, what changed, what came out, against the parent's latest comparable run."""
import pandas as pd

from .record import finished_runs, read_json
from .verdict import paired_bootstrap, sentence

ROWS = [("macro_f1", "validation macro F1"), ("accuracy", "validation accuracy"),
        ("holdout_macro_f1", "holdout macro F1"), ("holdout_accuracy", "holdout accuracy"),
        ("mask_f1", "mask F1"), ("gender_f1", "gender F1"), ("age_f1", "age F1")]


def parent_run(runs_dir, cfg):
    """The parent's newest finished run on the same data, or None."""
    if not cfg.get("parent"):
        return None
    found = finished_runs(runs_dir, name=cfg["parent"], fingerprint=cfg.get("data_fingerprint"))
    same = [d for d in found if read_json(d / "config.json", {}).get("fields") == cfg.get("parent_fields")]
    return (same or found or [None])[0]


def _fmt(v):
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def verdict(run, par):
    """The paired verdict against the parent run, or None when either side lacks predictions."""
    mine, theirs = run.path("valid_preds.csv"), (par / "valid_preds.csv") if par else None
    if theirs is None or not theirs.exists() or not mine.exists():
        return None
    return paired_bootstrap(pd.read_csv(mine, dtype={"person": str}), pd.read_csv(theirs, dtype={"person": str}))


def write_card(run, cfg, metrics, status, runs_dir):
    par = parent_run(runs_dir, cfg)
    pm = read_json(par / "metrics.json", {}) if par else {}
    v = verdict(run, par) if par else None
    if par:
        metrics["verdict"] = v or {"verdict": "cannot compare"}
    lines = [f"# {cfg['name']}  ({status})", "", f"**Hypothesis.** {cfg.get('hypothesis') or '(no docstring)'}", ""]
    if cfg.get("parent"):
        change = ", ".join(f"`{k}`: {a!r} → {b!r}" for k, (a, b) in cfg["changed"].items()) or "none"
        lines += [f"**Parent.** `{cfg['parent']}`  **Change.** {change}", ""]
    if cfg.get("overrides"):
        lines += ["**Overrides (--set).** " + ", ".join(f"`{k}={v!r}`" for k, v in cfg["overrides"].items()), ""]
    head = "| | this run |" + (f" parent ({par.name}) | delta |" if par else "")
    lines += [head, "|---|---|" + ("---|---|" if par else "")]
    for key, label in ROWS:
        v = metrics.get(key)
        if v is None and pm.get(key) is None:
            continue
        row = f"| {label} | {_fmt(v)} |"
        if par:
            d = v - pm[key] if isinstance(v, float) and isinstance(pm.get(key), float) else None
            row += f" {_fmt(pm.get(key))} | {'—' if d is None else f'{d:+.3f}'} |"
        lines.append(row)
    lines.append(f"| epochs run | {metrics.get('epochs_run', '—')} |" + (f" {pm.get('epochs_run', '—')} | |" if par else ""))
    lines.append("")
    if par:
        lines += [sentence(v), ""]
        if read_json(par / "config.json", {}).get("fields") != cfg.get("parent_fields"):
            lines += ["Note: the parent's run used other field values than this run's parent "
                      "(different --set overrides); the comparison is not like for like.", ""]
    if cfg.get("parent") and not par:
        lines += [f"No finished run of the parent `{cfg['parent']}` on this data yet: "
                  f"`python -m fastmask.run recipes/{cfg['parent']}.py` makes one.", ""]
    gap = metrics.get("macro_f1", 0) - metrics["holdout_macro_f1"] if "holdout_macro_f1" in metrics else None
    if gap is not None:
        lines += [f"Validation minus holdout macro F1: {gap:+.3f}"
                  + (" — validation is optimistic: does the split leak people?" if gap > 0.05 else "."), ""]
    lines += ["![confusion](confusion.png)", "", "![learning curves](curves.png)", ""]
    return "\n".join(lines)
