"""Benchmark commands (make bench-*): fixed splits of ../shared/datasets, figures to var/bench/<name>.json."""
