"""Contract path (DESIGN.md): `fastmask.split.person_split` and `person_kfold` live in `fastmask.data.split`."""
from fastmask.data.split import Splitter, person_kfold, person_split  # noqa: F401
