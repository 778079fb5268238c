"""One run's life: the session on every rank (train, predict, record), the parent trained on demand and
--decide's seed pairs, MLflow tracking."""
