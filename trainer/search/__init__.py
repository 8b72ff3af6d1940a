"""Hyperparameter search: an Optuna study of training runs, locally or on a Ray cluster."""
