"""R-Drop: two dropout passes over the same text should predict the same classes.

A few thousand noisy labels are easy to memorise. Penalising the divergence between two
dropout-perturbed predictions of each text pushes the model toward predictions that do not
hinge on single units (Liang et al., 2021, "R-Drop: Regularized Dropout for Neural Networks").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def doubled(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch stacked on itself: one forward pass gives two dropout samples of every row.

    One pass (not two) keeps a DistributedDataParallel model to one backward per forward.
    """
    return {name: torch.cat([tensor, tensor]) for name, tensor in batch.items()}


def symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean over rows of (KL(p||q) + KL(q||p)) / 2 between the class distributions of two logit tensors."""
    if first.shape != second.shape:
        raise ValueError(f"R-Drop needs two logit tensors of one shape; got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")
    p, q = F.log_softmax(first, dim=-1), F.log_softmax(second, dim=-1)
    return 0.5 * (F.kl_div(q, p, reduction="batchmean", log_target=True)
                  + F.kl_div(p, q, reduction="batchmean", log_target=True))


def rdrop_loss(logits: torch.Tensor, target: torch.Tensor, loss_fn, weight: float) -> torch.Tensor:
    """``logits`` of a ``doubled`` batch: the mean task loss of both halves plus ``weight`` x their divergence."""
    first, second = logits.chunk(2)
    task = 0.5 * (loss_fn(first, target) + loss_fn(second, target))
    return task + weight * symmetric_kl(first, second)
