"""A model registry on disk: immutable numbered versions per name, plus movable aliases.

Layout::

    <root>/<name>/v1/ v2/ ...      one artifact folder per version (core.artifacts), never changed
    <root>/<name>/aliases.json     {"production": 2}: which version each alias points at
    <root>/<name>/.lock            flock file: version numbers and aliases change under it

Services load ``production``; training saves a new version and :meth:`Registry.promote`
moves ``production`` only when the new model scores at least as well on the same dev set
(the "continuous improvement" step). Old versions stay, so a rollback is a promotion.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.artifacts import ArtifactError, ModelCard, read_card, update_card, write_artifact
from core.atomic import atomic_write_text, is_staging_leftover

logger = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"
LOCK_FILE = ".lock"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION_DIR = re.compile(r"^v([0-9]+)$")
VERSION_REF = re.compile(r"^v?([0-9]+)$")


def default_registry_root() -> Path:
    """``TEXTML_MODEL_DIR`` if set, else ``<repo root>/var/models``; the one place that variable is read."""
    configured = os.environ.get("TEXTML_MODEL_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[1] / "var" / "models"


class ModelNotFoundError(ArtifactError):
    """A model name, version or alias that the registry does not hold; the message lists what it does hold."""


@dataclass(frozen=True)
class PromotionResult:
    """What :meth:`Registry.promote` did: ``reason`` is a sentence for people, with the figures compared."""

    promoted: bool
    version: int
    previous: int | None
    reason: str


def _dev_score(card: ModelCard, metric: str) -> float | None:
    value = card.metrics.get("dev", {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _dev_sets(card: ModelCard) -> set[str]:
    return {record["sha256"] for record in card.data if record.get("role") == "dev"}


def compare_for_promotion(candidate: ModelCard, current: ModelCard) -> tuple[bool, str]:
    """Whether ``candidate`` may replace ``current``, and why, by the promotion rule.

    Both must record the same dev set (equal sha256 of their ``dev`` data records) and a
    finite ``metrics["dev"][metric]``, where ``metric`` is the candidate's primary metric;
    the candidate then needs a score >= the current one (a tie promotes the newer model).
    """
    new, old, metric = f"v{candidate.version}", f"v{current.version}", candidate.primary_metric
    new_sets, old_sets = _dev_sets(candidate), _dev_sets(current)
    if not new_sets or not old_sets:
        which = " and ".join(label for label, sets in ((new, new_sets), (old, old_sets)) if not sets)
        return False, f"{which} record(s) no dev data, so the dev scores of {new} and {old} cannot be compared"
    if new_sets != old_sets:
        return False, (
            f"{new} was scored on a different dev set (sha256 {', '.join(s[:12] for s in sorted(new_sets))}) "
            f"than {old} ({', '.join(s[:12] for s in sorted(old_sets))}), so their scores are not comparable; "
            f"evaluate both on the same dev set"
        )
    new_score, old_score = _dev_score(candidate, metric), _dev_score(current, metric)
    if new_score is None or old_score is None:
        which = " and ".join(label for label, score in ((new, new_score), (old, old_score)) if score is None)
        return False, f"{which} has no numeric dev {metric} in its card metrics, so the models cannot be compared"
    if new_score >= old_score:
        return True, f"{new} dev {metric} {new_score:.4f} >= {old} {old_score:.4f} on the same dev set"
    return False, f"{new} dev {metric} {new_score:.4f} < {old} {old_score:.4f} on the same dev set"


class Registry:
    """Named, versioned model artifacts under ``root`` (default: :func:`default_registry_root`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_registry_root()

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Model names with at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and NAME.match(entry.name) and not is_staging_leftover(entry) and self._versions(entry)
        )

    def versions(self, name: str) -> list[int]:
        """Version numbers of ``name``, ascending; ModelNotFoundError if there are none."""
        found = self._versions(self._folder(name))
        if not found:
            raise self._no_model(name)
        return found

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for ``name`` (empty when nothing was promoted yet)."""
        self.versions(name)
        return self._aliases(name)

    def cards(self, name: str | None = None) -> list[ModelCard]:
        """Cards of every version of ``name`` (or of every model), each with ``version`` filled in."""
        cards = []
        for model in [name] if name is not None else self.names():
            for version in self.versions(model):
                cards.append(self._card_at(model, version))
        return cards

    def path(self, name: str, version: int | str = "production") -> Path:
        """The artifact folder of ``name`` at ``version``: an int, ``"3"``, ``"v3"``, ``"latest"`` or an alias."""
        return self._folder(name) / f"v{self._resolve(name, version)}"

    def production_path(self, name: str) -> Path | None:
        """The artifact folder of ``name``'s production version, or None when there is none: the one place that
        answers "which fine-tuned model do the apps load, if any" (their fallback is a base model)."""
        try:
            return self.path(name, "production")
        except (ModelNotFoundError, FileNotFoundError, ValueError):
            return None

    def card(self, name: str, version: int | str = "production") -> ModelCard:
        """The card of ``name`` at ``version`` (resolved as in :meth:`path`)."""
        return self._card_at(name, self._resolve(name, version))

    # -- writing ---------------------------------------------------------------------------

    def save(self, name: str, save: Callable[[Path], None], card: ModelCard) -> Path:
        """Write a new version of ``name`` and return its folder; sets ``card.name`` and ``card.version``.

        The next number is taken and the artifact written while holding the model's lock
        file, so concurrent trainers (threads or processes) get distinct versions; a second
        save of the same name waits for the first one's ``save`` callback to finish.
        """
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked(name):
            version = max(self._versions(folder), default=0) + 1
            card.name, card.version = name, version
            target = write_artifact(folder / f"v{version}", save, card)
        logger.info("saved %s v%d to %s", name, version, target)
        return target

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of ``name`` at an existing ``version`` (no promotion rule; see :meth:`promote`)."""
        version = self._resolve(name, version)
        with self._locked(name):
            self._write_alias(name, alias, version)

    def promote(
        self, name: str, version: int | str, *, force: bool = False, alias: str = "production"
    ) -> PromotionResult:
        """Point ``alias`` at ``version`` if the promotion rule allows it (or ``force``); never deletes anything.

        With no current alias the candidate is promoted. Otherwise see
        :func:`compare_for_promotion`. A forced promotion that the rule would have refused
        is recorded in the candidate's card ``notes`` (event ``forced_promotion``) before
        the alias moves. Rolling back is promoting an older version.
        """
        version = self._resolve(name, version)
        candidate = self._card_at(name, version)
        with self._locked(name):
            previous = self._aliases(name).get(alias)
            if previous is None:
                allowed, reason = True, f"{name} has no {alias} version yet, so v{version} becomes {alias}"
            elif previous == version:
                return PromotionResult(True, version, previous, f"v{version} is already {alias} of {name}")
            else:
                allowed, reason = compare_for_promotion(candidate, self._card_at(name, previous))
            if not allowed and not force:
                reason = f"not promoted: {reason}; {alias} stays v{previous} (force the promotion to override)"
                logger.info("refused to promote %s v%d to %s: %s", name, version, alias, reason)
                return PromotionResult(False, version, previous, reason)
            if not allowed:
                reason = f"forced: {reason}"
                note = {
                    "event": "forced_promotion",
                    "alias": alias,
                    "previous": previous,
                    "reason": reason,
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                update_card(self._folder(name) / f"v{version}", lambda card: card.notes.append(note))
            self._write_alias(name, alias, version)
        logger.info("promoted %s v%d to %s (was %s): %s", name, version, alias, previous, reason)
        return PromotionResult(True, version, previous, reason)

    # -- internals ---------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME.match(name):
            raise ArtifactError(
                f"model name {name!r} is not allowed; use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit (e.g. 'support-intents')"
            )
        return self.root / name

    @staticmethod
    def _versions(folder: Path) -> list[int]:
        if not folder.is_dir():
            return []
        return sorted(
            int(match.group(1))
            for entry in folder.iterdir()
            if entry.is_dir() and not is_staging_leftover(entry) and (match := VERSION_DIR.match(entry.name))
        )

    def _aliases(self, name: str) -> dict[str, int]:
        path = self._folder(name) / ALIASES_FILE
        try:
            aliases = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as error:
            raise ArtifactError(
                f"{path} is not valid JSON ({error.msg}); repair it, or delete it and promote a version again"
            ) from None
        if not isinstance(aliases, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in aliases.values()
        ):
            raise ArtifactError(
                f"{path} holds {aliases!r}; it must map alias names to version numbers, e.g. "
                '{"production": 3}; repair it or delete it and promote a version again'
            )
        return aliases

    def _write_alias(self, name: str, alias: str, version: int) -> None:
        """Caller holds the lock."""
        if not isinstance(alias, str) or not NAME.match(alias) or alias == "latest" or VERSION_REF.match(alias):
            raise ArtifactError(
                f"alias {alias!r} is not allowed; use a word such as 'production' or 'staging' "
                "(not 'latest' or a version like 'v3', which already mean something)"
            )
        aliases = {**self._aliases(name), alias: version}
        atomic_write_text(self._folder(name) / ALIASES_FILE, json.dumps(aliases, indent=2, sort_keys=True) + "\n")

    def _resolve(self, name: str, version: int | str) -> int:
        versions = self.versions(name)
        if isinstance(version, str) and version.strip() == "latest":
            return versions[-1]
        if isinstance(version, str) and (match := VERSION_REF.match(version.strip())):
            version = int(match.group(1))
        if isinstance(version, int) and not isinstance(version, bool):
            if version not in versions:
                raise self._missing(name, f"no version {version}", versions)
            return version
        if not isinstance(version, str):
            raise ArtifactError(
                f"version {version!r} of {name!r} is not understood; give a number, 'vN', 'latest' or an alias"
            )
        alias = version.strip()
        aliases = self._aliases(name)
        if alias not in aliases:
            if alias == "production":
                fix = f"promote one with `python -m core promote {name} {versions[-1]}`"
            else:
                fix = f"give a version, 'latest' or an existing alias, or set it with Registry.set_alias({name!r}, ...)"
            raise self._missing(name, f"no {alias!r} alias", versions, fix)
        if aliases[alias] not in versions:
            raise self._missing(name, f"alias {alias!r} points at v{aliases[alias]}, which does not exist", versions)
        return aliases[alias]

    def _card_at(self, name: str, version: int) -> ModelCard:
        card = read_card(self._folder(name) / f"v{version}")
        card.version = version  # the folder is the truth
        return card

    def _missing(self, name: str, problem: str, versions: list[int], fix: str | None = None) -> ModelNotFoundError:
        aliases = ", ".join(f"{alias} -> v{v}" for alias, v in sorted(self._aliases(name).items())) or "none"
        fix = fix or "pick one of these"
        return ModelNotFoundError(
            f"model {name!r} has {problem} in {self.root}; versions: {', '.join(f'v{v}' for v in versions)}; "
            f"aliases: {aliases}; {fix}"
        )

    def _no_model(self, name: str) -> ModelNotFoundError:
        names = self.names()
        held = f"models here: {', '.join(names)}" if names else "it holds no models yet"
        return ModelNotFoundError(
            f"no model named {name!r} in the registry at {self.root}; {held}; check the name, "
            "train and save the model, or set TEXTML_MODEL_DIR to the right registry"
        )

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Exclusive flock on ``<root>/<name>/.lock`` (between threads too: each open is its own lock)."""
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
