"""``python -m apps.recommender --help``."""

from apps.recommender.cli import main

raise SystemExit(main())
