"""Features, labels, training, evaluation and the model artifact: pure code, no broker."""
