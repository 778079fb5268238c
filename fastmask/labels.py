"""The 18-class code: class = mask * 6 + gender * 3 + age_group (see dataset-facts.md)."""
import numpy as np

MASKS = ("wear", "incorrect", "not_wear")
GENDERS = ("male", "female")
AGE_GROUPS = ("<30", "30-59", ">=60")
AGE_THRESHOLD = 60
# (first age, last age, the group boundary between them): where an age-group error is a near miss
AGE_BANDS = ((28, 31, 30), (57, 60, 60))
N_CLASSES = len(MASKS) * len(GENDERS) * len(AGE_GROUPS)
TASKS = ("mask", "gender", "age")  # the parts of the code, in the order decode returns them
# Words for cards and plots: "not_wear" reads badly in a sentence.
_MASK_WORDS = ("mask", "incorrect-mask", "no-mask")


def age_group(age, threshold=AGE_THRESHOLD):
    """0 for < 30, 1 for 30..threshold-1, 2 for >= threshold; scalars or arrays."""
    a = np.asarray(age)
    g = np.where(a < 30, 0, np.where(a < threshold, 1, 2))
    return int(g) if g.ndim == 0 else g


def encode(mask, gender, age_grp):
    """Class ids from task ids (ints or arrays)."""
    out = np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age_grp)
    return int(out) if out.ndim == 0 else out


def decode(label):
    """(mask, gender, age_group) ids from class ids (int or array)."""
    lab = np.asarray(label)
    parts = lab // 6, (lab // 3) % 2, lab % 3
    return tuple(int(p) for p in parts) if lab.ndim == 0 else parts


def label_of(mask: str, gender: str, age: int, threshold=AGE_THRESHOLD) -> int:
    return encode(MASKS.index(mask), GENDERS.index(gender), age_group(age, threshold))


def describe(label: int) -> str:
    """'female 30-59 no-mask' for a class id."""
    m, g, a = decode(int(label))
    return f"{GENDERS[g]} {AGE_GROUPS[a]} {_MASK_WORDS[m]}"


CLASS_NAMES = [describe(i) for i in range(N_CLASSES)]


def per_class(metrics, key="per_class_f1"):
    """{class id: value} from a metrics dict's per-class entry (`per_class_f1` or `per_class_support`),
    keyed by class name as learn.metrics.scores writes it, or by "0".."17" as runs before class-name keys
    wrote it."""
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    out = {}
    for k, v in (metrics.get(key) or {}).items():
        c = ids.get(k, int(k) if str(k).isdigit() else None)
        if c is not None and 0 <= c < N_CLASSES:
            out[c] = v
    return out
