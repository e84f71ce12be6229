"""Every vector ragtune computes: loading a model, encoding texts and windows, hosted baselines, the LlamaIndex view."""
