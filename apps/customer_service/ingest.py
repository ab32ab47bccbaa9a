"""``python -m apps.customer_service ingest``: parse every document, then chunk, embed and index them.

Parsing comes first and stops at the first bad file (file and line in the error), before
any model loads; the index folder is swapped in only once the new index is complete.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from apps.customer_service.kb_index import IngestConfig, build_kb_index, fingerprint
from apps.customer_service.knowledge_base import load_knowledge_base

log = logging.getLogger(__name__)


def ingest(kb_dir: Path, index_dir: Path, embedder_ref: str, config: IngestConfig | None = None,
           embedder=None) -> dict:
    """Build the index at ``index_dir`` from ``kb_dir``; returns its card. ``embedder`` skips loading one."""
    documents = load_knowledge_base(kb_dir)
    if embedder is None:
        from core.inference.embedder import Embedder

        embedder = Embedder.load(embedder_ref)
    return build_kb_index(documents, embedder.encode, index_dir, embedder_ref, config or IngestConfig())


def stale_reason(kb_dir: Path, index_dir: Path, embedder_ref: str) -> str | None:
    """Why the index at ``index_dir`` cannot serve ``embedder_ref`` over ``kb_dir`` (None when it can).

    Query vectors must come from the model that embedded the index: after ``make bench-bot``
    promotes a fine-tuned embedder, an index built with the base model would answer nonsense.
    """
    try:
        card = json.loads((Path(index_dir) / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable index at {index_dir}"
    if card.get("embedder") != str(embedder_ref):
        return f"the index was embedded with {card.get('embedder')}, the bot now uses {embedder_ref}"
    if card.get("kb_sha256") != fingerprint(load_knowledge_base(kb_dir)):
        return f"the knowledge base in {kb_dir} changed since the index was built"
    return None


def ensure_index(kb_dir: Path, index_dir: Path, embedder_ref: str) -> str | None:
    """Re-ingest when the index cannot serve ``embedder_ref`` (see :func:`stale_reason`); returns why, or None."""
    reason = stale_reason(kb_dir, index_dir, embedder_ref)
    if reason:
        log.warning("re-ingesting the knowledge base: %s", reason)
        ingest(kb_dir, index_dir, embedder_ref)
    return reason
