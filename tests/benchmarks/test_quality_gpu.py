"""The GPU check's pieces that run without a GPU: the timed slice, the CPU reference, the kit."""

from __future__ import annotations

import pytest

from benchmarks.quality_gpu import cpu_reference, training_slice
from core.data.labelled import LabelledTexts


def _splits() -> dict[str, LabelledTexts]:
    # sorted by label, like BANKING77's train.csv: a head slice would hold one class
    train = LabelledTexts([f"text {i}" for i in range(300)], ["a"] * 100 + ["b"] * 100 + ["c"] * 100, "train")
    dev = LabelledTexts(["x", "y", "z", "w"], ["a", "d", "c", "b"], "dev")
    return {"train": train, "dev": dev}


def test_slice_spreads_over_a_sorted_split_and_keeps_dev_labels_it_knows():
    train, dev = training_slice(_splits(), 30)
    assert len(train) == 30
    assert train.label_counts() == {"a": 10, "b": 10, "c": 10}
    assert dev.labels == ["a", "c", "b"]  # "d" is not in the slice, so a classifier could not score it


def test_slice_larger_than_the_split_takes_every_row_once():
    train, _ = training_slice(_splits(), 1000)
    assert sorted(train.texts) == sorted(_splits()["train"].texts)


def test_cpu_reference_matches_the_model_by_folder_name():
    figures = {"fpb50": {"train_examples_per_s": 22.8, "train_seconds": 510.5, "accuracy": 0.82,
                         "base_model": "all-MiniLM-L6-v2", "epochs_run": 3},
               "machine": {"cpu_count": 2, "threads": 2}}
    same = cpu_reference(figures, "fpb50", "/kit/all-MiniLM-L6-v2")
    assert same["same_base_model"] and same["train_examples_per_s"] == 22.8 and same["cpu_count"] == 2
    assert not cpu_reference(figures, "fpb50", "all-mpnet-base-v2")["same_base_model"]
    assert cpu_reference(figures, "banking77", "all-MiniLM-L6-v2") is None


def test_kit_carries_the_datasets_and_weights_that_widen_back(tmp_path):
    from safetensors.torch import load_file

    from benchmarks.datasets import DatasetMissingError, datasets_dir
    from core.model_refs import resolve_model
    from infra import gpu_kit

    try:
        source = datasets_dir()
    except DatasetMissingError as error:
        pytest.skip(str(error))
    figures = tmp_path / "cpu.json"
    figures.write_text("{}")
    kit = tmp_path / "kit"
    size = gpu_kit.pack(kit, figures)
    assert size < gpu_kit.TRANSFER_LIMIT
    for name in gpu_kit.DATASET_FILES:
        assert (kit / "datasets" / name).read_bytes() == (source / name).read_bytes()
    folder = gpu_kit.widen_weights(kit)
    original = load_file(f"{resolve_model(gpu_kit.MODEL_NAME).location}/model.safetensors")
    widened = load_file(folder / "model.safetensors")
    assert widened.keys() == original.keys()
    for key, tensor in original.items():
        assert widened[key].dtype == tensor.dtype
        assert (widened[key] - tensor).abs().max() <= 1e-3 * tensor.abs().max() + 1e-6, key
