"""Text-based recommendation ranker: core embeddings, FAISS candidates, a learned ranker; Python and HTTP APIs."""
