"""``python -m apps.recommender --help``."""

from apps.recommender.cli import main

if __name__ == "__main__":  # not when a ranking process (spawn) imports it
    raise SystemExit(main())
