"""Reading training data: tables of rows (CSV/JSONL), labelled texts, text pairs."""
