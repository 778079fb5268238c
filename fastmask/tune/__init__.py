"""Hyperparameter search: optuna over a recipe's `space(trial)`, every trial a recorded run."""
