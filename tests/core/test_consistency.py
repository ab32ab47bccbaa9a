"""R-Drop's pieces: the doubled batch and the symmetric divergence between its two halves."""

from __future__ import annotations

import pytest
import torch

from core.finetune.classifier import ClassifierTrainingConfig
from core.finetune.consistency import doubled, rdrop_loss, symmetric_kl


def test_doubled_stacks_every_tensor_on_itself() -> None:
    batch = {"input_ids": torch.tensor([[1, 2], [3, 4]]), "attention_mask": torch.ones(2, 2, dtype=torch.long)}
    twice = doubled(batch)
    assert torch.equal(twice["input_ids"], torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4]]))
    assert twice["attention_mask"].shape == (4, 2)


def test_symmetric_kl_is_zero_for_equal_predictions_and_symmetric_otherwise() -> None:
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [3.0, -2.0, 0.0]])
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert symmetric_kl(a, a + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # logits, not probabilities
    assert symmetric_kl(a, b).item() == pytest.approx(symmetric_kl(b, a).item())
    p, q = a.softmax(-1), b.softmax(-1)
    by_hand = 0.5 * ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    assert symmetric_kl(a, b).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_symmetric_kl_names_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"one shape; got \(2, 3\) and \(2, 4\)"):
        symmetric_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_rdrop_loss_is_the_mean_task_loss_plus_the_weighted_divergence() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [3.0, -2.0, 0.0]])
    target = torch.tensor([0, 1])
    loss_fn = torch.nn.CrossEntropyLoss()
    first, second = logits[:2], logits[2:]
    task = 0.5 * (loss_fn(first, target) + loss_fn(second, target))
    assert rdrop_loss(logits, target, loss_fn, 0.0).item() == pytest.approx(task.item())
    assert rdrop_loss(logits, target, loss_fn, 2.0).item() == pytest.approx(
        (task + 2.0 * symmetric_kl(first, second)).item())


def test_a_negative_rdrop_weight_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"rdrop=-0\.5"):
        ClassifierTrainingConfig(rdrop=-0.5).validate()
