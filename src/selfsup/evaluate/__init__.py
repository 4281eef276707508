"""Evaluation protocols: linear probe, kNN, fine-tuning with partial freezing, the supervised baseline,
label-budget sweeps and transfer (evaluate on a dataset other than the pretraining one)."""
from selfsup.evaluate.budgets import evaluate_protocols, label_sweep
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import finetune, fresh_copy, supervised_baseline
from selfsup.evaluate.knn import knn_classify, knn_predict
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.sweep import summarize, sweep

__all__ = ["evaluate_protocols", "extract_features", "finetune", "fresh_copy", "knn_classify", "knn_predict",
           "label_sweep", "linear_probe", "summarize", "supervised_baseline",
           "sweep"]
