"""The data layer: the competition folder's layout and quirks (`layout`), images and the input cache
(`cache`), the person-grouped split (`split`), sampling and augmentation, and `load` (a folder or the
twin). `fastmask.data.read_train` / `read_eval` are contract paths (DESIGN.md)."""
from fastmask.data.layout import fingerprint, load_image, locate, read_answers, read_eval, read_train, to_rgb  # noqa: F401
