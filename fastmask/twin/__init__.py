"""The synthetic twin of the private competition data set (`python -m fastmask.synth OUT_DIR`).

The real photos are not on these machines, so every loader, split and recipe is exercised on a twin
that copies the real set's layout, quirks and label statistics (dataset-facts.md). Unlike the real set,
the twin also writes the eval answers and a log of the label noise it injected, so holdout scores and
noise handling can be measured."""
from fastmask.twin.draw import draw_face, identity  # noqa: F401
from fastmask.twin.people import PHOTOS, Person, default_eval_people, sample_people  # noqa: F401
from fastmask.twin.write import ensure_twin, eval_image_id, make_twin, render_photo, stored_name  # noqa: F401
