"""Fine-tuning: classifiers, bi-encoder embedders and cross-encoder re-rankers, each returning a saveable result."""
