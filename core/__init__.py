"""The shared core: fine-tuning, evaluation, versioned model artifacts, inference and vector search."""
