"""Text-based recommendation ranker: core embeddings, FAISS candidates, a learned ranker; Python and HTTP APIs.

Modules, in the order a request meets them:

* ``items``: the item shape and row validation (CSV/JSONL/HTTP); ``catalog``: the SQLite store
  (source of truth, change sequence, interaction log);
* ``encoders``: which embedder (registry ``production`` ``recommender-embedder``, else
  all-MiniLM-L6-v2); ``item_index``: item vectors + ``core.index.VectorIndex``, snapshots;
* ``interactions``: popularity and item-kNN co-occurrence; ``cold``: the exact cold-item channel;
  ``ranking``: candidates and features;
  ``ranker``: the learned linear combination; ``diversity``: MMR; ``explain``: one reason per item;
* ``recommender``: the ``Recommender`` product code calls; ``api``/``schemas``/``client``: HTTP;
  ``auth``: the API key and rate-limit check of every HTTP route but ``/health``; ``keys``: the hashed
  key store behind ``python -m apps.recommender keys``; ``cli``: ``python -m apps.recommender``.
"""
