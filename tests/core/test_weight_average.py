"""The EMA of the weights: its warm-up, its average, and the swap that lends it to the model."""

from __future__ import annotations

import pytest
import torch

from core.finetune.classifier import ClassifierTrainingConfig
from core.finetune.weight_average import WeightAverage


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.frozen = torch.nn.Linear(2, 2).requires_grad_(False)  # frozen weights are not averaged
        self.register_buffer("position_ids", torch.arange(4))  # nor are integer buffers


def _shift(model: torch.nn.Module, by: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.add_(by)


def test_the_decay_warms_up_and_the_average_follows_the_formula() -> None:
    model = Tiny()
    start = model.linear.weight.detach().clone()
    average = WeightAverage(model, decay=0.99)
    assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the start weighs little
    _shift(model, 1.0)
    average.update(model)
    assert torch.allclose(average.shadow["linear.weight"], start + 0.9)
    assert set(average.shadow) == {"linear.weight", "linear.bias"}
    for _ in range(2000):
        average.update(model)
    assert average.current_decay() == 0.99
    assert torch.allclose(average.shadow["linear.weight"], start + 1.0, atol=1e-5)


def test_swapped_in_lends_the_average_and_gives_the_own_weights_back_even_on_error() -> None:
    model = Tiny()
    average = WeightAverage(model, decay=0.5)
    _shift(model, 2.0)
    own = model.linear.weight.detach().clone()
    with pytest.raises(RuntimeError, match="inside"):
        with average.swapped_in(model):
            assert torch.allclose(model.linear.weight, own - 2.0)
            raise RuntimeError("inside")
    assert torch.equal(model.linear.weight, own)
    assert torch.equal(model.position_ids, torch.arange(4))


def test_state_dict_is_the_whole_state_with_the_average_and_later_updates_do_not_change_it() -> None:
    model = Tiny()
    average = WeightAverage(model, decay=0.5)
    _shift(model, 1.0)
    average.update(model)
    kept = average.state_dict(model)
    assert kept.keys() == model.state_dict().keys()
    assert torch.equal(kept["linear.weight"], average.shadow["linear.weight"])
    assert torch.equal(kept["frozen.weight"], model.frozen.weight)
    average.update(model)
    assert not torch.equal(kept["linear.weight"], average.shadow["linear.weight"])


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1])
def test_an_ema_decay_out_of_range_is_refused_by_name(decay: float) -> None:
    with pytest.raises(ValueError, match=rf"ema={decay!r}"):
        ClassifierTrainingConfig(ema=decay).validate()
    with pytest.raises(ValueError, match="0 < decay < 1"):
        WeightAverage(Tiny(), decay)
