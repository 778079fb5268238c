"""The learning layer: DataLoaders and learners (`build`), the training callbacks, and what the recipe
fields choose among: heads, losses, mixing, precision, the timm model, metrics, several processes."""
