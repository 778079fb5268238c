"""The runs layer: one run session (every rank), its folder, outputs, verdict, card, plots,
model files and inference, MLflow, and the index of run folders."""
