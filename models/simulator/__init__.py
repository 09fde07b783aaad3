"""A synthetic English school year for training, evaluation, demos and benchmarks."""
