"""Fine-tune a sequence classifier: the seed's recipe, made robust.

Recipe: a pre-trained encoder + a linear head on its mean-pooled output; AdamW with a small
learning rate, linear warm-up and decay, weight decay, dropout, gradient clipping; dynamic
padding over length-bucketed batches; early stopping on dev macro-F1 keeping the best
weights; temperature scaling fitted on dev. Two additions that matter on small data:

* ``head_init="probe"`` (LP-FT, Kumar et al. 2022): the head starts as a logistic regression
  fitted on the frozen encoder's features, so fine-tuning starts from the frozen baseline
  instead of from a random head that first distorts the encoder;
* layer-wise learning-rate decay: lower layers (general language) move less than top ones.

A student can also learn from teachers: rows of unlabelled text with their probabilities
(``core.finetune.distill``) train beside the gold rows.

Full fine-tuning or LoRA (peft). Runs under ``accelerate launch``/``torchrun`` unchanged.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from core.batching import collate, length_batches
from core.calibration import fit_temperature, softmax
from core.classifier_model import PooledClassifier
from core.data.labelled import LabelledTexts, label_space
from core.device import DeviceInfo, pick_device
from core.finetune.consistency import doubled, rdrop_loss
from core.finetune.distill import SoftLabelled
from core.finetune.soft_targets import agreement_targets, check_agreement
from core.finetune.weight_average import WeightAverage
from core.inference.logits import predict_logits
from core.metrics import classification_metrics
from core.model_refs import resolve_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainingConfig:
    """Every knob of a classifier fine-tune; stored in the model card as its hyper-parameters."""

    base_model: str = "all-MiniLM-L6-v2"
    epochs: int = 6
    batch_size: int = 32
    grad_accumulation: int = 1
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    layer_lr_decay: float = 0.9          # lr of layer i = lr * decay ** (layers - i); 1.0 disables
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    label_smoothing: float = 0.0
    agreement_targets: bool = False      # soft targets from the data's per-row annotator agreement
    max_length: int = 128
    class_weights: bool = False          # weight the loss by inverse class frequency
    rdrop: float = 0.0                   # weight of the R-Drop term (two dropout passes agree); 0 disables
    ema: float = 0.0                     # decay of a weight EMA that dev scores and the artifact keeps; 0 disables
    head_init: str = "probe"             # "probe" (LP-FT) or "random"
    patience: int = 2                    # epochs without dev macro-F1 gain before stopping
    max_train_minutes: float | None = None  # stop after the epoch that crosses this budget
    method: str = "full"                 # "full" or "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 13
    device: str | None = None            # None: CUDA if available, else CPU
    eval_batch_size: int = 128
    progress: bool = True

    def validate(self) -> None:
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
            "grad_accumulation": self.grad_accumulation >= 1, "learning_rate": self.learning_rate > 0,
            "max_length": 8 <= self.max_length <= 8192, "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "dropout": 0 <= self.dropout < 1, "layer_lr_decay": 0 < self.layer_lr_decay <= 1,
            "rdrop": self.rdrop >= 0, "ema": self.ema == 0 or 0 < self.ema < 1,
            "head_init": self.head_init in {"probe", "random"}, "method": self.method in {"full", "lora"},
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training option(s) {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}; "
                             "see `python -m core train classifier --help` for the allowed ranges")


@dataclass
class TrainedClassifier:
    """The fine-tuned model with what the card needs: metrics, history, timings."""

    model: PooledClassifier
    tokenizer: object
    labels: list[str]
    config: ClassifierTrainingConfig
    metrics: dict = field(default_factory=dict)       # {"dev": {...}, "dev_uncalibrated_ece": x}
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0
    train_examples_per_s: float = 0.0
    best_epoch: int = 0

    def save(self, path) -> None:
        self.model.save(path, self.tokenizer)

    def hyperparameters(self) -> dict:
        return asdict(self.config)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def _probe_head(model: PooledClassifier, features: np.ndarray, labels: np.ndarray) -> float:
    """Fit the head as a logistic regression on frozen features (LP-FT); returns train accuracy."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=10.0, max_iter=2000)
    probe.fit(features, labels)
    weight = torch.as_tensor(probe.coef_, dtype=model.head.weight.dtype)
    bias = torch.as_tensor(probe.intercept_, dtype=model.head.bias.dtype)
    if weight.shape[0] == 1:  # sklearn stores one row for two classes
        weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
    model.head.weight.data.copy_(weight)
    model.head.bias.data.copy_(bias)
    return float(probe.score(features, labels))


def _parameter_groups(model: PooledClassifier, config: ClassifierTrainingConfig) -> list[dict]:
    """AdamW groups: layer-wise decayed learning rates; no weight decay on biases and norms."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            lr = config.head_learning_rate
        else:
            depth = layers + 1  # embeddings and anything not in a numbered layer
            for part in name.split("."):
                if part.isdigit():
                    depth = layers - int(part)
                    break
            lr = config.learning_rate * config.layer_lr_decay ** depth
        decay = 0.0 if param.ndim == 1 or "norm" in name.lower() else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def _apply_lora(model: PooledClassifier, config: ClassifierTrainingConfig) -> None:
    """Freeze the encoder and train low-rank adapters on its attention and feed-forward layers."""
    from peft import LoraConfig, get_peft_model

    targets = [name for name in ("query", "key", "value", "dense", "q_lin", "k_lin", "v_lin")
               if any(n.endswith(name) for n, _ in model.encoder.named_modules())]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets)
    model.encoder = get_peft_model(model.encoder, lora)


def _accelerator(device_info: DeviceInfo, grad_accumulation: int) -> Accelerator:
    """An Accelerator for this run's device. accelerate keeps one device and precision per
    process and refuses another, so a run on another device than the last (GPU, then CPU)
    starts from a fresh state."""
    from accelerate.state import AcceleratorState

    mixed_precision = "bf16" if device_info.bf16 else "no"
    state = AcceleratorState._shared_state
    if state and (state["device"].type != device_info.device.type
                  or state.get("_mixed_precision") != mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device_info.device.type == "cpu", mixed_precision=mixed_precision,
                       gradient_accumulation_steps=grad_accumulation)


def train_classifier(config: ClassifierTrainingConfig, train: LabelledTexts, dev: LabelledTexts,
                     soft: SoftLabelled | None = None) -> TrainedClassifier:
    """Fine-tune on ``train`` (and, when given, on ``soft``'s rows toward their teachers'
    probabilities: ``core.finetune.distill``); select the epoch and fit the temperature on ``dev``."""
    config.validate()
    labels = label_space(train, dev)
    soft_targets = soft.columns_for(labels) if soft is not None else None
    shares = check_agreement(train.agreement, len(train), train.source) if config.agreement_targets else None
    resolved = resolve_model(config.base_model)
    _seed_everything(config.seed)
    device_info = pick_device(config.device)
    accelerator = _accelerator(device_info, config.grad_accumulation)
    device = accelerator.device
    log.info("training on %s (%d train, %d dev, %d classes)", device_info.name, len(train), len(dev), len(labels))

    tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    model = PooledClassifier.from_encoder(resolved.location, labels, config.dropout, config.max_length).to(device)
    label_id = {name: i for i, name in enumerate(labels)}
    y_train = np.array([label_id[x] for x in train.labels])
    y_dev = np.array([label_id[x] for x in dev.labels])
    train_ids = _encode(tokenizer, train.texts, config.max_length)
    dev_ids = _encode(tokenizer, dev.texts, config.max_length)

    if config.head_init == "probe":
        features = predict_logits(model, tokenizer, train_ids, config.eval_batch_size, device,
                                  device_info.autocast, features=True)
        log.info("linear probe on frozen features: train accuracy %.3f", _probe_head(model, features, y_train))
    if config.method == "lora":
        _apply_lora(model, config)

    weights = None
    if config.class_weights:
        counts = np.bincount(y_train, minlength=len(labels)).astype(np.float64)
        weights = torch.tensor(len(y_train) / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    if shares is not None or soft_targets is not None:  # the smoothing is folded into the soft targets
        full_agreement = np.ones(len(y_train))  # plain labels: agreement_targets smooths them as usual
        row_targets = agreement_targets(y_train, full_agreement if shares is None else shares, len(labels),
                                        config.label_smoothing)
        if soft_targets is not None:  # the teachers' rows follow the gold rows
            row_targets = np.concatenate([row_targets, soft_targets])
            train_ids = train_ids + _encode(tokenizer, soft.texts, config.max_length)
            log.info("distillation: %d gold rows + %d rows soft-labelled by %s", len(train), len(soft), soft.source)
        targets = torch.as_tensor(row_targets)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    else:
        targets = torch.as_tensor(y_train)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    optimizer = torch.optim.AdamW(_parameter_groups(model, config), lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size / config.grad_accumulation)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps_per_epoch * config.epochs),
                                                steps_per_epoch * config.epochs)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw_model = accelerator.unwrap_model(model)
    average = WeightAverage(raw_model, config.ema) if config.ema else None

    def dev_scores() -> dict:
        return classification_metrics(y_dev, softmax(predict_logits(
            raw_model, tokenizer, dev_ids, config.eval_batch_size, device, device_info.autocast)))

    rng = random.Random(config.seed)
    best = {"macro_f1": -1.0, "epoch": 0, "state": None}
    history: list[dict] = []
    started = time.monotonic()
    seen = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = length_batches([len(x) for x in train_ids], config.batch_size, rng, shuffle=True)
        # each process of a distributed run takes every world_size-th batch; all take the same
        # number (DDP all-reduces every step, so an extra step on one process would hang the others)
        if accelerator.num_processes > 1:
            usable = len(batches) // accelerator.num_processes * accelerator.num_processes
            batches = batches[:usable][accelerator.process_index::accelerator.num_processes]
        losses = []
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress
                   or not accelerator.is_local_main_process, leave=False)
        for index in bar:
            with accelerator.accumulate(model):
                batch = collate(tokenizer, train_ids, index, device)
                target = targets[index].to(device)
                with accelerator.autocast():
                    if config.rdrop > 0:
                        loss = rdrop_loss(model(**doubled(batch)).float(), target, loss_fn, config.rdrop)
                    else:
                        loss = loss_fn(model(**batch).float(), target)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                if average is not None and accelerator.sync_gradients:
                    average.update(raw_model)
            losses.append(loss.item())
            seen += len(index) * accelerator.num_processes
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        dev_metrics = dev_scores()
        raw_scores = {}
        if average is not None:  # the averaged weights are the candidate; the raw ones are logged beside them
            raw_scores = {f"dev_raw_{k}": dev_metrics[k] for k in ("accuracy", "macro_f1")}
            with average.swapped_in(raw_model):
                dev_metrics = dev_scores()
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "first_loss": float(losses[0]),
                        "last_loss": float(np.mean(losses[-20:])), "seconds": round(elapsed, 1),
                        **{f"dev_{k}": v for k, v in dev_metrics.items() if k != "examples"}, **raw_scores})
        log.info("epoch %d: loss %.4f dev accuracy %.4f macro-F1 %.4f%s (%.0f s)", epoch, history[-1]["train_loss"],
                 dev_metrics["accuracy"], dev_metrics["macro_f1"],
                 f" (EMA; raw weights {raw_scores['dev_raw_macro_f1']:.4f})" if raw_scores else "", elapsed)
        if dev_metrics["macro_f1"] > best["macro_f1"]:
            state = (average.state_dict(raw_model) if average is not None
                     else {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()})
            best = {"macro_f1": dev_metrics["macro_f1"], "epoch": epoch, "state": state}
        elif epoch - best["epoch"] >= config.patience:
            log.info("early stop: no dev macro-F1 gain for %d epochs", config.patience)
            break
        if config.max_train_minutes and elapsed > config.max_train_minutes * 60:
            log.info("stopping: time budget of %.0f min reached", config.max_train_minutes)
            break
    train_seconds = time.monotonic() - started

    raw_model.load_state_dict(best["state"])
    final = raw_model
    dev_logits = predict_logits(final, tokenizer, dev_ids, config.eval_batch_size, device, device_info.autocast)
    final.temperature = fit_temperature(dev_logits, y_dev)
    calibrated = classification_metrics(y_dev, softmax(dev_logits, final.temperature))
    metrics = {"dev": calibrated, "dev_uncalibrated_ece": classification_metrics(y_dev, softmax(dev_logits))["ece"],
               "temperature": final.temperature}
    return TrainedClassifier(final, tokenizer, labels, config, metrics, history, train_seconds,
                             seen / max(train_seconds, 1e-9), best["epoch"])
