"""Model references: packaged models load offline; bad references say what was tried."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.model_refs import ModelReferenceError, _unpack_split_zip, resolve_model


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_packaged_minilm_loads_offline_and_embeds(offline: None) -> None:
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model("all-MiniLM-L6-v2")
    assert resolved.source == "packaged"
    model = SentenceTransformer(resolved.location, device="cpu")
    vectors = model.encode(
        ["How do I reset my card PIN?", "I forgot the PIN of my card", "The stock fell 5% today"],
        normalize_embeddings=True,
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a paraphrase is closer than an unrelated sentence
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_hub_name_of_a_packaged_model_maps_to_the_package(offline: None) -> None:
    by_hub_name = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert by_hub_name.source == "packaged"
    assert by_hub_name.location == resolve_model("all-MiniLM-L6-v2").location


def test_smollm2_resolves_to_its_gguf_file(offline: None) -> None:
    resolved = resolve_model("SmolLM2-135M-Instruct")
    assert resolved.gguf_file and (Path(resolved.location) / resolved.gguf_file).is_file()


def test_local_directory_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model(tmp_path).source == "local"
    assert resolve_model(tmp_path).location == str(tmp_path.resolve())


def test_unknown_reference_offline_says_what_was_tried(offline: None) -> None:
    with pytest.raises(ModelReferenceError) as error:
        resolve_model("no-such-org/no-such-model")
    message = str(error.value)
    assert "'no-such-org/no-such-model'" in message
    assert "local path" in message and "does not exist" in message
    assert "all-MiniLM-L6-v2" in message  # the packaged names it compared against
    assert "HF_HUB_OFFLINE" in message


def test_missing_local_path_is_not_sent_to_the_hub() -> None:
    with pytest.raises(ModelReferenceError, match=r"'./models/missing'.*does not exist.*not a valid hub name"):
        resolve_model("./models/missing")


def test_empty_reference_is_rejected() -> None:
    with pytest.raises(ModelReferenceError, match="empty model reference"):
        resolve_model("  ")


def test_hub_name_passes_through_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    resolved = resolve_model("ProsusAI/finbert")
    assert (resolved.source, resolved.location) == ("hub", "ProsusAI/finbert")


def test_split_zip_is_joined_and_unpacked_atomically(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("m/config.json", '{"a": 1}')
        zf.writestr("m/desktop.ini", "junk")
        zf.writestr("m/sub/weights.bin", b"\x00" * 5000)
    data = archive.read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(data), 1000)):
        part = tmp_path / f"part.{i:03d}"
        part.write_bytes(data[start:start + 1000])
        parts.append(part)
    target = tmp_path / "cache" / "m"
    target.parent.mkdir()
    _unpack_split_zip(parts, member_prefix="m/", target=target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "config.json", "sub/weights.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["m"], "no staging folder is left behind"
