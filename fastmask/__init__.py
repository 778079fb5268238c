"""fastmask: fastai rapid prototyping for the 18-class mask / gender / age face task."""
__version__ = "0.1.0"
