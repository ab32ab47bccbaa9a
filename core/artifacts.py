"""Model artifacts: a folder of weights plus a JSON card that says what the model is.

An artifact is written in one piece (:func:`write_artifact`): the trainer's ``save``
callback fills a temporary folder, ``card.json`` is written last, and the folder is renamed
into place, so a reader finds either a complete artifact or none. The card records what
is needed to trust and compare a model later: the task, the base model, the data it saw
(with sha256 fingerprints, so two scores are only compared on the same dev set), the
hyperparameters, the metrics and the library versions it was trained with.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from core.atomic import atomic_directory, atomic_write_text

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
TASKS = ("classifier", "embedder", "reranker", "encoder")
DATA_ROLES = ("train", "dev", "test")

# Card key -> distributions that provide it (the first one installed wins).
_LIBRARIES = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "sentence-transformers": ("sentence-transformers",),
    "peft": ("peft",),
    "faiss": ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu", "faiss"),
    "numpy": ("numpy",),
    "scikit-learn": ("scikit-learn",),
}


class ArtifactError(ValueError):
    """A missing, corrupt or invalid artifact or card; the message names the path, the problem and the fix."""


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    found = [("python", platform.python_version())]
    for key, distributions in _LIBRARIES.items():
        for distribution in distributions:
            try:
                found.append((key, metadata.version(distribution)))
                break
            except metadata.PackageNotFoundError:
                continue
    return tuple(found)


def library_versions() -> dict[str, str]:
    """Versions of Python and the installed ML libraries, read from package metadata.

    Only installed libraries appear. Nothing is imported (importing torch takes seconds),
    so this is cheap enough to call for every card.
    """
    return dict(_installed_versions())


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# Expected type of each card field, for the checks in ModelCard._validate.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "task": (str,),
    "base_model": (str,),
    "version": (int, type(None)),
    "data": (list,),
    "hyperparameters": (dict,),
    "metrics": (dict,),
    "primary_metric": (str,),
    "labels": (list, type(None)),
    "library_versions": (dict,),
    "created_at": (str,),
    "notes": (list,),
    "extra": (dict,),
}
_REQUIRED = ("name", "task", "base_model")


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if kind is type(None) else kind.__name__ for kind in types)


@dataclass
class ModelCard:
    """What a saved model is, how it was made and how well it did; stored as ``card.json``.

    ``data`` holds one :func:`data_record` per file used (role ``train``/``dev``/``test``);
    ``metrics`` maps a split to its scores (``{"dev": {"macro_f1": 0.81}}``), and
    ``metrics["dev"][primary_metric]`` is what promotion compares. ``labels`` are the
    classifier's label names in id order. ``notes`` is an append-only event log (forced
    promotions), ``extra`` holds anything task-specific. The card is validated on creation
    and again before every write; invalid values raise :class:`ArtifactError`.
    """

    name: str
    task: str
    base_model: str
    version: int | None = None
    data: list[dict] = field(default_factory=list)
    hyperparameters: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    primary_metric: str = "macro_f1"
    labels: list[str] | None = None
    library_versions: dict = field(default_factory=library_versions)
    created_at: str = field(default_factory=_utc_now)
    notes: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        for key, types in _FIELD_TYPES.items():
            value = getattr(self, key)
            if not isinstance(value, types) or isinstance(value, bool):
                raise ArtifactError(
                    f"card field {key!r} is {value!r} ({type(value).__name__}); it must be {_type_names(types)}"
                )
        for key in _REQUIRED:
            if not getattr(self, key).strip():
                raise ArtifactError(f"card field {key!r} is empty; give the model's {key.replace('_', ' ')}")
        if self.task not in TASKS:
            raise ArtifactError(f"card field 'task' is {self.task!r}; it must be one of {', '.join(TASKS)}")
        if self.version is not None and self.version < 1:
            raise ArtifactError(f"card field 'version' is {self.version}; versions start at 1")
        if self.labels is not None and not all(isinstance(label, str) for label in self.labels):
            raise ArtifactError(f"card field 'labels' is {self.labels!r}; it must be a list of label names (str)")
        for key in ("data", "notes"):
            for item in getattr(self, key):
                if not isinstance(item, dict):
                    raise ArtifactError(f"card field {key!r} holds {item!r}; each entry must be a dict")
        for record in self.data:
            if record.get("role") not in DATA_ROLES or not isinstance(record.get("sha256"), str):
                raise ArtifactError(
                    f"card data record {record!r} needs a 'role' in {', '.join(DATA_ROLES)} and a 'sha256'; "
                    "build it with core.artifacts.data_record(path, role)"
                )
        for split, scores in self.metrics.items():
            if not isinstance(scores, dict):
                raise ArtifactError(
                    f"card metrics[{split!r}] is {scores!r}; metrics map a split to its scores, "
                    'e.g. {"dev": {"macro_f1": 0.81}}'
                )

    def to_dict(self) -> dict:
        """A JSON-ready deep copy of the card."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        """The card stored in ``d`` (as written by :meth:`to_dict`); ArtifactError names a missing or bad key."""
        if not isinstance(d, dict):
            raise ArtifactError(f"a card must be a JSON object, got {type(d).__name__}")
        missing = [key for key in _REQUIRED if key not in d]
        if missing:
            raise ArtifactError(f"card is missing the key(s) {', '.join(map(repr, missing))}")
        unknown = sorted(set(d) - set(_FIELD_TYPES))
        if unknown:
            raise ArtifactError(
                f"card has unknown key(s) {', '.join(map(repr, unknown))}; known keys are "
                f"{', '.join(_FIELD_TYPES)} (put anything else under 'extra')"
            )
        return cls(**copy.deepcopy(d))


def _card_json(card: ModelCard) -> str:
    card._validate()  # the card is mutable: check it again before it is written

    def unsupported(value: object) -> object:
        if hasattr(value, "tolist"):  # numpy scalars and arrays in metrics
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise ArtifactError(
            f"card value {value!r} ({type(value).__name__}) cannot be stored as JSON; "
            "use numbers, strings, lists and dicts"
        )

    return json.dumps(card.to_dict(), indent=2, ensure_ascii=False, default=unsupported) + "\n"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _count_rows(path: Path) -> int:
    """Data rows as the trainers read them: CSV records after the header, else non-empty lines."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:  # e.g. latin-1 PhraseBank
        if path.suffix.lower() == ".csv":
            # csv.reader, not lines: a quoted field may span lines
            return max(sum(1 for row in csv.reader(handle) if row) - 1, 0)
        return sum(1 for line in handle if line.strip())


def data_record(path: str | Path, role: str, rows: int | None = None) -> dict:
    """A card ``data`` entry: ``{"role", "path", "sha256", "rows"}`` for one data file.

    The sha256 identifies the exact file, so promotion can tell whether two models were
    scored on the same dev set. ``rows`` is counted when not given.
    """
    path = Path(path)
    if role not in DATA_ROLES:
        raise ArtifactError(f"data role {role!r} for {path} is not one of {', '.join(DATA_ROLES)}")
    if not path.is_file():
        raise ArtifactError(f"data file {path} does not exist; record the file the model was trained or scored on")
    return {
        "role": role,
        "path": str(path),
        "sha256": sha256_file(path),
        "rows": _count_rows(path) if rows is None else int(rows),
    }


def write_artifact(target: Path, save: Callable[[Path], None], card: ModelCard) -> Path:
    """Write a new artifact folder ``target``: ``save(folder)`` writes the model files, then the card.

    ``save`` receives an empty temporary folder; ``card.json`` is written after it returns
    and the folder is then renamed to ``target``. If ``save`` raises or anything fails
    before the rename, the temporary folder is removed and ``target`` does not appear (a
    killed process can leave a hidden ``.<name>.tmp-*`` folder, which readers skip). An
    existing ``target`` raises ``core.atomic.AtomicWriteError``: artifacts are immutable.
    """
    target = Path(target)
    text = _card_json(card)  # fail on a bad card before the (slow) save
    with atomic_directory(target) as staging:
        save(staging)
        if (staging / CARD_FILE).exists():
            raise ArtifactError(
                f"the save callback for {target} wrote {CARD_FILE}, which write_artifact owns; "
                "pass the card's contents through the card argument instead"
            )
        (staging / CARD_FILE).write_text(text, encoding="utf-8")
    logger.info("wrote artifact %s", target)
    return target


def read_card(path: Path) -> ModelCard:
    """The card of the artifact folder ``path``; ArtifactError names the path when it cannot be read."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact folder {path} does not exist; check the path (or the model name and version)")
    card_path = path / CARD_FILE
    try:
        text = card_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(
            f"{path} has no {CARD_FILE}, so it is not a complete model artifact; "
            "point at an artifact folder or train the model again"
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArtifactError(
            f"{card_path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "repair the file or train the model again"
        ) from None
    try:
        return ModelCard.from_dict(raw)
    except ArtifactError as error:
        raise ArtifactError(f"{card_path}: {error}") from None


@contextmanager
def _folder_lock(path: Path) -> Iterator[None]:
    """Exclusive flock on the folder itself: serializes card updates without adding a file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update_card(path: Path, mutate: Callable[[ModelCard], None]) -> ModelCard:
    """Read the card of ``path``, apply ``mutate`` to it in place and write it back atomically.

    Concurrent updates of the same artifact are serialized, so none is lost. If ``mutate``
    raises or leaves an invalid card, the file on disk is unchanged.
    """
    path = Path(path)
    read_card(path)  # clear errors for a missing folder before locking it
    with _folder_lock(path):
        card = read_card(path)
        mutate(card)
        try:
            text = _card_json(card)
        except ArtifactError as error:
            raise ArtifactError(f"updating {path / CARD_FILE}: {error}") from None
        atomic_write_text(path / CARD_FILE, text)
    logger.info("updated card of %s", path)
    return card


def check_artifact(path: Path, required: Iterable[str] = ()) -> ModelCard:
    """The card of ``path`` after checking that each ``required`` file exists in the folder."""
    path = Path(path)
    card = read_card(path)
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise ArtifactError(
            f"corrupt artifact {path}: missing {', '.join(missing)}; "
            "files were deleted after it was written, so restore them or train the model again"
        )
    return card
