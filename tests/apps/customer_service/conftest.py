"""Shared fixtures: a small real knowledge base, the real MiniLM embedder, and an index built from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.customer_service.ingest import ingest
from apps.customer_service.kb_index import KbIndex

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL_KB = {
    "answers/card_arrival.md": (
        '---\nintent: card_arrival\ntitle: "When your card will arrive"\nquestions:\n'
        '  - "My card still has not arrived"\n---\n\n'
        "Cards are posted within two working days and usually arrive in 3 to 5 working days.\n"),
    "answers/lost_or_stolen_card.md": (
        '---\nintent: lost_or_stolen_card\ntitle: "Lost or stolen card"\nquestions:\n  - "I lost my card"\n---\n\n'
        "Freeze your card in the app immediately and report it lost; we send a free replacement.\n"),
    "answers/exchange_rate.md": (
        '---\nintent: exchange_rate\ntitle: "Our exchange rates"\nquestions:\n'
        '  - "What exchange rate do you use?"\n---\n\n'
        "We use the interbank exchange rate during market hours, with a small mark-up at weekends.\n"),
    "general/fees.md": (
        '---\ntitle: "Fees overview"\ntopic: fees\n---\n\n# Fees overview\n\n'
        "ATM withdrawals are free up to 200 GBP a month, then 2%.\n\nExtra physical cards cost 5 GBP each.\n"),
}


def write_kb(folder: Path, files: dict[str, str] = SMALL_KB) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def embedder():
    from core.inference.embedder import Embedder

    return Embedder.load("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def small_index_dir(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    root = tmp_path_factory.mktemp("cs-kb")
    kb = write_kb(root / "kb")
    ingest(kb, root / "index", "all-MiniLM-L6-v2", embedder=embedder)
    return root / "index"


@pytest.fixture(scope="session")
def small_index(small_index_dir: Path) -> KbIndex:
    return KbIndex.load(small_index_dir)
