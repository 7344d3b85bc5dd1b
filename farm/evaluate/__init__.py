"""Evaluating trained models: fold ensembles and inference, `farm predict`'s inputs and CSV, the robustness
study, cross-validation summaries, paper-style reports and the promotion decision. Plain PyTorch/NumPy."""
