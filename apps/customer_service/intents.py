"""Intent models the Rasa NLU component asks over HTTP (see ``action_server.py``).

Two kinds, same interface (``rank(texts, n)`` -> per text, ``(intent, confidence)`` best first):

* :class:`ClassifierIntents`: core's fine-tuned classifier (``core.inference.classifier``) with
  temperature-scaled probabilities; the one to use with a trained ``intent-banking77`` model;
* :class:`RetrievalIntents`: the intent of the nearest knowledge-base passages, scored by cosine
  similarity; needs no training, so a fresh checkout works before any classifier exists.
"""

from __future__ import annotations

from apps.customer_service.kb_index import EncodeFn, KbIndex
from apps.customer_service.retrieval import IndexHolder


class ClassifierIntents:
    def __init__(self, classifier) -> None:
        self.classifier = classifier  # core.inference.classifier.TextClassifier
        self.name = "classifier"

    def rank(self, texts: list[str], n: int = 10) -> list[list[tuple[str, float]]]:
        prediction = self.classifier.predict(texts)
        classes = self.classifier.classes
        ranked = []
        for row in prediction.probabilities:  # (classes,)
            order = row.argsort()[::-1][:n]
            ranked.append([(classes[i], float(row[i])) for i in order])
        return ranked


class RetrievalIntents:
    def __init__(self, encode: EncodeFn, index: IndexHolder | KbIndex, candidates: int = 20) -> None:
        self.encode = encode
        self.index = index
        self.candidates = candidates
        self.name = "retrieval"

    def rank(self, texts: list[str], n: int = 10) -> list[list[tuple[str, float]]]:
        index = self.index.get() if isinstance(self.index, IndexHolder) else self.index
        ranked = []
        for hits in index.search(self.encode(list(texts)), self.candidates):
            best: dict[str, float] = {}
            for chunk, score in hits:
                if chunk.intent and chunk.intent not in best:
                    best[chunk.intent] = max(0.0, min(1.0, score))
            ranked.append(list(best.items())[:n])
        return ranked
