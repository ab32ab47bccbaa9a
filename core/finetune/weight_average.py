"""An exponential moving average (EMA) of the weights along a fine-tune.

On a few thousand noisy labels the weights at the end of an epoch depend on the last few
batches, so two seeds (or two epochs) differ more than the data explains. The average of
the weights over the last stretch of steps sits nearer the middle of that region of the
loss (Polyak and Juditsky, 1992; the EMA most vision and diffusion trainers evaluate), and
it costs one copy of the weights and one multiply-add per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _averaged(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors worth averaging: trained parameters and floating-point buffers (frozen
    weights, e.g. the encoder under LoRA, would only average to themselves)."""
    tensors = {name: param for name, param in model.named_parameters() if param.requires_grad}
    tensors.update((name, buffer) for name, buffer in model.named_buffers() if buffer.is_floating_point())
    return tensors


class WeightAverage:
    """EMA of a model's trained parameters and floating-point buffers, updated after each optimizer step.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    first steps are not pulled toward the starting weights (the warm-up timm's ModelEma uses).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay!r} is out of range; expected 0 < decay < 1 (e.g. 0.99), or 0 for off")
        self.decay = decay
        self.updates = 0
        self.shadow = {name: tensor.detach().clone() for name, tensor in _averaged(model).items()}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        current = _averaged(model)
        for name, average in self.shadow.items():
            average.mul_(decay).add_(current[name].detach().to(average.dtype), alpha=1.0 - decay)
        self.updates += 1

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A CPU copy of ``model``'s whole state with the averaged weights in place of its own."""
        return {name: self.shadow.get(name, tensor).detach().cpu().clone()
                for name, tensor in model.state_dict().items()}

    @contextmanager
    @torch.no_grad()
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block ``model`` holds the averaged weights; its own come back afterwards."""
        state = model.state_dict()
        own = {name: state[name].detach().clone() for name in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(own, strict=False)
