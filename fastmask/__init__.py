"""fastmask: fastai rapid prototyping for the 18-class mask / gender / age face task."""
__version__ = "0.1.0"

from .recipe import Recipe, load_recipe  # noqa: F401,E402  (standard library only: import stays cheap)
