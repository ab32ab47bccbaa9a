"""``python -m core``: train, evaluate, list and promote models.

    python -m core train classifier --train train.csv --dev dev.csv --name sentiment
    python -m core train embedder --train pairs.csv --dev dev_pairs.csv --name kb-embedder
    python -m core train reranker --train pairs.csv --dev dev_pairs.csv --name kb-reranker
    python -m core train encoder --train news.csv --dev news_dev.csv --name encoder-finance   # MLM on domain text
    python -m core eval sentiment --data test.csv           # the production version
    python -m core models list
    python -m core export-onnx sentiment --data dev.csv     # int8 ONNX, used only if accuracy holds
    python -m core promote sentiment 3                      # only if its dev metric is not worse

Every input is checked (files, columns, labels, model reference) before any model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from core.artifacts import ArtifactError, ModelCard, data_record
from core.data.labelled import LabelledTexts, label_space, load_labelled
from core.data.tables import DataError
from core.model_refs import ModelReferenceError, resolve_model
from core.registry import Registry

# help texts every training command shares; each command's dict adds its own
SHARED_HELP = {
    "weight_decay": "AdamW weight decay (not on biases and norms)",
    "warmup_ratio": "share of steps with linear warm-up, then linear decay",
    "max_grad_norm": "gradient clipping norm",
    "seed": "random seed", "device": "cpu, cuda or cuda:N (default: CUDA when available)",
    "progress": "show progress bars",
}

CLASSIFIER_HELP = {
    **SHARED_HELP,
    "base_model": "encoder to fine-tune: local path, packaged name (all-MiniLM-L6-v2, all-mpnet-base-v2) or hub name",
    "epochs": "maximum epochs (early stopping may end sooner)",
    "batch_size": "examples per optimizer step (before accumulation)",
    "grad_accumulation": "batches accumulated per optimizer step",
    "learning_rate": "AdamW learning rate of the top encoder layer",
    "head_learning_rate": "learning rate of the classification head",
    "layer_lr_decay": "layer-wise decay: layer i gets lr * decay**(layers - i); 1 disables",
    "dropout": "dropout before the head",
    "label_smoothing": "cross-entropy label smoothing",
    "agreement_targets": "train toward soft targets: each label gets its annotator agreement share "
                         "(--agreement-column), the other classes the rest",
    "max_length": "tokens per text (longer texts are truncated)",
    "class_weights": "weight the loss by inverse class frequency (imbalanced data)",
    "rdrop": "R-Drop weight: each batch runs twice through dropout and the two predictions' divergence "
             "is added to the loss with this weight (about 2x the compute); 0 disables",
    "ema": "decay of an exponential moving average of the weights (e.g. 0.99): dev scores the averaged "
           "weights each epoch and the artifact keeps them; 0 disables",
    "head_init": "probe: start the head as a logistic regression on frozen features (LP-FT); random",
    "patience": "epochs without dev macro-F1 gain before early stopping",
    "max_train_minutes": "stop after the epoch that crosses this wall-time budget",
    "method": "full fine-tuning or lora (peft adapters; the saved model has them merged)",
    "lora_r": "LoRA rank", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
    "eval_batch_size": "batch size for evaluation",
}


PAIR_MODEL_HELP = {
    **SHARED_HELP,
    "base_model": "model to start from: local path, packaged name (all-MiniLM-L6-v2, all-mpnet-base-v2) or hub name",
    "epochs": "maximum epochs (early stopping on dev MRR@10 may end sooner)",
    "batch_size": "pairs (embedder) or (query, passage) rows (re-ranker) per step",
    "learning_rate": "AdamW learning rate", "head_learning_rate": "learning rate of the new one-logit head",
    "max_seq_length": "tokens per text (longer texts are truncated)",
    "scale": "cosine similarity x scale = logits of the in-batch softmax (MultipleNegativesRankingLoss)",
    "mined_negatives": "hard negatives per pair mined with the base model (0: in-batch negatives only)",
    "one_pair_per_label": "labelled data: at most one pair of a label per batch (no false in-batch negatives)",
    "negatives_per_query": "mined negatives per train pair", "eval_candidates": "candidates per dev query",
    "mining_model": "bi-encoder that mines the negatives", "balance_classes": "weight positives by the "
    "negative:positive ratio", "patience": "epochs without dev MRR@10 gain before early stopping",
    "eval_batch_size": "batch size for evaluation",
}


ENCODER_HELP = {
    **SHARED_HELP,
    "base_model": "encoder to adapt: packaged name, hub name or local folder", "epochs": "passes over the texts",
    "batch_size": "texts per step", "learning_rate": "peak AdamW learning rate of the encoder",
    "head_learning_rate": "learning rate of the MLM head (new on sentence-transformers models)",
    "head_warmup_ratio": "share of steps that train only a newly made MLM head (encoder frozen)",
    "mask_probability": "share of tokens masked", "max_length": "tokens per text (longer texts are truncated)",
    "max_train_minutes": "stop at the first step past this budget",
    "eval_batch_size": "batch size for the dev loss",
}


class CliError(Exception):
    """A usage error to print without a traceback."""


def _plain_fields(config_cls) -> list[dataclasses.Field]:
    """Fields with a plain default (numbers, text, flags): the ones a command line can set."""
    return [f for f in dataclasses.fields(config_cls) if f.default is not dataclasses.MISSING]


def _add_config_options(parser: argparse.ArgumentParser, config_cls, help_texts: dict[str, str]) -> None:
    """One ``--option`` per config field, typed from its default, documented from ``help_texts``."""
    for f in _plain_fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = help_texts.get(f.name, f.name.replace("_", " "))
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_text)
        else:
            kind = type(f.default) if f.default is not None else (float if "minutes" in f.name else str)
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)


def _config_from_args(config_cls, args: argparse.Namespace):
    given = {f.name: getattr(args, f.name) for f in _plain_fields(config_cls) if getattr(args, f.name) is not None}
    return config_cls(**given)


def _load_split(path: str | None, args: argparse.Namespace) -> LabelledTexts | None:
    return load_labelled(path, args.text_column, args.label_column) if path else None


def _is_main_process() -> bool:
    """False in the non-zero ranks of a distributed launch (``RANK`` set by torchrun/accelerate)."""
    return int(os.environ.get("RANK", "0")) == 0


def _save_and_report(registry: Registry, args: argparse.Namespace, save, card: ModelCard, metrics: dict,
                     detail: str = "") -> Path:
    """Save the artifact, print where and its metrics, and promote it when ``--promote`` was given."""
    path = registry.save(args.name, save, card)
    print(f"saved {path}{detail}")
    print(json.dumps(metrics, indent=2))
    if getattr(args, "promote", False):
        print(registry.promote(args.name, path.name).reason)
    return path


def train_classifier_command(args: argparse.Namespace) -> int:
    from core.finetune.classifier import ClassifierTrainingConfig, train_classifier
    from core.inference.classifier import TextClassifier, labelled_metrics

    config = _config_from_args(ClassifierTrainingConfig, args)
    config.validate()
    if config.agreement_targets and not args.agreement_column:
        raise CliError("--agreement-targets needs --agreement-column: the training data's column with each "
                       "row's share of annotators who chose its label")
    train = load_labelled(args.train, args.text_column, args.label_column,
                          args.agreement_column if config.agreement_targets else None)
    dev, test = (_load_split(p, args) for p in (args.dev, args.test))
    labels = label_space(train, *[s for s in (dev, test) if s is not None])
    resolve_model(config.base_model)  # fail now, not after loading data into a model
    registry = Registry(args.registry)
    teachers = _teacher_paths(args, registry)

    print(f"training {args.name!r} from {config.base_model} on {len(train)} examples ({len(dev)} dev)")
    held_out = [t for split in (dev, test) if split is not None for t in split.texts]
    soft = _soft_rows(args, teachers, labels, held_out, config.device) if teachers else None
    trained = train_classifier(config, train, dev, soft)
    if not _is_main_process():
        return 0  # under accelerate launch / torchrun, one process writes the artifact
    metrics = {"dev": trained.metrics["dev"]}
    if test is not None:
        metrics["test"] = labelled_metrics(TextClassifier(trained.model, trained.tokenizer, config.device), test)
    card = ModelCard(
        name=args.name, task="classifier", base_model=config.base_model,
        data=[data_record(p, role) for p, role in ((args.train, "train"), (args.dev, "dev"), (args.test, "test"),
                                                    (args.unlabelled, "train")) if p],
        hyperparameters=trained.hyperparameters(), metrics=metrics, labels=trained.labels,
        extra={"history": trained.history, "best_epoch": trained.best_epoch,
               "temperature": trained.metrics["temperature"], "train_seconds": round(trained.train_seconds, 1),
               "dev_uncalibrated_ece": trained.metrics["dev_uncalibrated_ece"],
               **({"distillation": {"teachers": [str(p) for p in teachers], "unlabelled_rows": len(soft)}}
                  if soft is not None else {})},
    )
    _save_and_report(registry, args, trained.save, card, metrics)
    return 0


def _teacher_paths(args: argparse.Namespace, registry: Registry) -> list[Path]:
    """``--teacher`` references as artifact folders (a folder, ``NAME`` or ``NAME:VERSION``); checked
    with ``--unlabelled`` before any training starts."""
    if bool(args.teacher) != bool(args.unlabelled):
        raise CliError("distillation needs both --teacher (one or more classifiers) and --unlabelled "
                       "(the texts they label); give both or neither")
    return [_artifact_path(registry, reference) for reference in args.teacher or []]


def _artifact_path(registry: Registry, reference: str, version: str = "production") -> Path:
    """``reference`` when it is an artifact folder, else a registry ``NAME`` (at ``version``) or ``NAME:VERSION``."""
    if Path(reference).is_dir():
        return Path(reference)
    name, _, given = reference.partition(":")
    return registry.path(name, given or version)


def _soft_rows(args: argparse.Namespace, teachers: list[Path], labels: list[str], held_out: list[str],
               device: str | None):
    """The ``--unlabelled`` texts, less any dev/test text (``held_out``), with the teachers' mean
    calibrated probabilities; teachers must predict the training data's ``labels``."""
    from core.finetune.distill import teacher_probabilities, without_texts
    from core.inference.classifier import TextClassifier

    texts = _texts(args.unlabelled, args.text_column)
    kept = without_texts(texts, held_out)
    if len(kept) < len(texts):
        print(f"left out {len(texts) - len(kept)} unlabelled texts that are also in --dev/--test")
    if not kept:
        raise CliError(f"--unlabelled {args.unlabelled}: no text left that is not in --dev/--test")
    loaded = [TextClassifier.load(p, device=device) for p in teachers]
    for path, teacher in zip(teachers, loaded, strict=True):
        if sorted(teacher.classes) != labels:
            raise CliError(f"teacher {path} predicts {sorted(teacher.classes)}, but the training data's labels are "
                           f"{labels}; a teacher must have the student's labels")
    print(f"labelling {len(kept)} texts of {args.unlabelled} with {len(teachers)} teacher(s)")
    return teacher_probabilities(loaded, kept, args.unlabelled)


def train_pairs_command(args: argparse.Namespace) -> int:
    """``train embedder`` and ``train reranker``: (query, positive) pairs or labelled texts in, artifact out."""
    from core.data.pairs import PairDataConfig, load_pairs

    if args.task == "embedder":
        from core.finetune.embedder import EmbedderTrainingConfig as Config
        from core.finetune.embedder import train_embedder as train
    else:
        from core.finetune.reranker import RerankerTrainingConfig as Config
        from core.finetune.reranker import train_reranker as train
    config = _config_from_args(Config, args)
    config.validate()
    data_config = PairDataConfig(mode=args.mode, query_column=args.query_column,
                                 positive_column=args.positive_column, negative_column=args.negative_column,
                                 text_column=args.text_column, label_column=args.label_column,
                                 max_pairs_per_label=args.max_pairs_per_label)
    train_pairs, dev_pairs = load_pairs(args.train, data_config), load_pairs(args.dev, data_config)
    resolve_model(config.base_model)  # fail now, not after mining
    registry = Registry(args.registry)

    print(f"training {args.task} {args.name!r} from {config.base_model} on {len(train_pairs)} pairs "
          f"({len(dev_pairs)} dev)")
    trained = train(config, train_pairs, dev_pairs)
    data = [data_record(args.train, "train", rows=len(train_pairs)), data_record(args.dev, "dev", rows=len(dev_pairs))]
    _save_and_report(registry, args, trained.save, trained.card(args.name, data), trained.metrics)
    return 0


def _texts(path: str, column: str) -> list[str]:
    from core.data.tables import read_rows, require_columns, text_value

    rows = read_rows(path)
    require_columns(rows, [column], path)
    return [text_value(row[column], path, number, column) for number, row in enumerate(rows, start=1)]


def train_encoder_command(args: argparse.Namespace) -> int:
    """``train encoder``: continued masked-language-model pre-training on unlabelled domain text."""
    from core.finetune.mlm import MlmTrainingConfig, train_mlm

    config = _config_from_args(MlmTrainingConfig, args)
    config.validate()
    texts, dev_texts = _texts(args.train, args.text_column), _texts(args.dev, args.text_column)
    resolve_model(config.base_model)
    print(f"adapting {config.base_model} to {len(texts)} texts ({len(dev_texts)} dev) as {args.name!r}")
    adapted = train_mlm(config, texts, dev_texts)
    card = ModelCard(name=args.name, task="encoder", base_model=config.base_model,
                     data=[data_record(args.train, "train"), data_record(args.dev, "dev")],
                     hyperparameters=adapted.hyperparameters(), metrics=adapted.metrics,
                     primary_metric="mlm_accuracy",
                     extra={"history": adapted.history, "train_seconds": round(adapted.train_seconds, 1)})
    path = _save_and_report(Registry(args.registry), args, adapted.save, card, adapted.metrics)
    print(f"use it as --base-model {path}")
    return 0


def soup_command(args: argparse.Namespace) -> int:
    """``soup``: average the weights of several versions of one classifier into a new version."""
    from core.finetune.soup import soup_card_fields, soup_from_registry
    from core.inference.classifier import TextClassifier, labelled_metrics

    dev = load_labelled(args.dev, args.text_column, args.label_column)
    test = _load_split(args.test, args)
    registry = Registry(args.registry)
    soup, cards = soup_from_registry(registry, args.name, args.versions, dev, args.metric, args.device)
    if not soup.averages:
        print(f"no soup saved: no average beat {soup.ingredients[0]} alone on dev {args.metric} "
              f"({soup.steps[0]['soup']:.4f}); use {args.name} {soup.ingredients[0]} as it is")
        return 0
    metrics = {"dev": soup.metrics["dev"]}
    if test is not None:
        metrics["test"] = labelled_metrics(TextClassifier(soup.model, soup.tokenizer, args.device), test)
    fields = soup_card_fields(soup, cards, args.metric)
    fields["data"] += [data_record(path, role) for path, role in ((args.dev, "dev"), (args.test, "test")) if path]
    card = ModelCard(name=args.name, task="classifier", metrics=metrics, primary_metric=args.metric, **fields)
    _save_and_report(registry, args, soup.save, card, metrics, f": soup of {', '.join(soup.ingredients)} "
                     f"(candidates v{', v'.join(map(str, args.versions))})")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    from core.inference.classifier import TextClassifier, labelled_metrics

    path = _artifact_path(Registry(args.registry), args.model, args.version)
    data = load_labelled(args.data, args.text_column, args.label_column)
    figures = labelled_metrics(TextClassifier.load(path), data)
    print(json.dumps({"model": str(path), "data": args.data, **figures}, indent=2))
    return 0


def export_onnx_command(args: argparse.Namespace) -> int:
    from core.inference.onnx_classifier import export_int8

    path = _artifact_path(Registry(args.registry), args.model, args.version)
    data = load_labelled(args.data, args.text_column, args.label_column)
    verdict = export_int8(path, data, args.max_drop)
    print(json.dumps(verdict, indent=2))
    print("accepted: apps serving on the CPU use the int8 model" if verdict["accepted"]
          else "rejected: accuracy dropped too much; apps keep serving the PyTorch model")
    return 0


def models_list_command(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    cards: list[ModelCard] = registry.cards(args.name) if args.name else registry.cards()
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    if not cards:
        print(f"no models in {registry.root}; train one with `python -m core train classifier ...`")
        return 0
    print(f"{'name':28} {'version':>7}  {'aliases':14} {'task':10} {'base model':22} {'dev':>8}  created")
    for card in cards:
        aliases = ",".join(a for a, v in registry.aliases(card.name).items() if v == card.version)
        dev = card.metrics.get("dev", {}).get(card.primary_metric)
        dev_text = f"{dev:.4f}" if isinstance(dev, (int, float)) else "-"
        print(f"{card.name:28} {'v' + str(card.version):>7}  {aliases:14} {card.task:10} {card.base_model[:22]:22} "
              f"{dev_text:>8}  {card.created_at}")
    return 0


def promote_command(args: argparse.Namespace) -> int:
    result = Registry(args.registry).promote(args.name, args.version, force=args.force, alias=args.alias)
    print(result.reason)
    return 0 if result.promoted else 2


def build_parser() -> argparse.ArgumentParser:
    from core.finetune.classifier import ClassifierTrainingConfig

    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=None, help="model registry root (default var/models, "
                        "or TEXTML_MODEL_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a model").add_subparsers(dest="task", required=True)
    classifier = train.add_parser("classifier", help="sequence classifier from labelled texts (CSV/JSONL)",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    classifier.add_argument("--train", required=True, help="training data (.csv with a header, or .jsonl)")
    classifier.add_argument("--dev", required=True, help="dev data: early stopping, calibration, promotion")
    classifier.add_argument("--test", help="optional test data, reported only")
    classifier.add_argument("--text-column", default="text", help="column with the text")
    classifier.add_argument("--label-column", default="label", help="column with the label")
    classifier.add_argument("--agreement-column", help="training data's column with each row's annotator "
                            "agreement, a share in (0, 1]; read with --agreement-targets")
    classifier.add_argument("--teacher", action="append", help="distil: a trained classifier (folder, NAME or "
                            "NAME:VERSION) whose calibrated probabilities label --unlabelled; repeat for an ensemble")
    classifier.add_argument("--unlabelled", help="distil: unlabelled texts (--text-column) that the teachers label; "
                            "the student trains on them as well as on --train")
    classifier.add_argument("--name", required=True, help="registry name, e.g. sentiment")
    classifier.add_argument("--promote", action="store_true", help="promote to production if dev is not worse")
    _add_config_options(classifier, ClassifierTrainingConfig, CLASSIFIER_HELP)
    classifier.set_defaults(func=train_classifier_command)

    from core.finetune.embedder import EmbedderTrainingConfig
    from core.finetune.reranker import RerankerTrainingConfig

    for task, config_cls, summary in (
        ("embedder", EmbedderTrainingConfig, "bi-encoder (MultipleNegativesRankingLoss, in-batch negatives)"),
        ("reranker", RerankerTrainingConfig, "cross-encoder re-ranker (binary cross-entropy, mined negatives)"),
    ):
        sub = train.add_parser(task, help=f"{summary} from (query, positive) pairs or labelled texts",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("--train", required=True, help="pairs (query, positive[, negative] columns) or labelled "
                         "texts (text, label: same label = positive pair), .csv or .jsonl")
        sub.add_argument("--dev", required=True, help="dev pairs or labelled texts: early stopping and promotion")
        sub.add_argument("--mode", choices=["auto", "pairs", "labelled"], default="auto",
                         help="auto: pairs when the query and positive columns exist")
        sub.add_argument("--query-column", default="query")
        sub.add_argument("--positive-column", default="positive")
        sub.add_argument("--negative-column", default="negative", help="optional given hard negatives")
        sub.add_argument("--text-column", default="text", help="labelled mode: the text")
        sub.add_argument("--label-column", default="label", help="labelled mode: the label")
        sub.add_argument("--max-pairs-per-label", type=int, default=200, help="labelled mode: pairs per label")
        sub.add_argument("--name", required=True, help="registry name, e.g. kb-embedder")
        sub.add_argument("--promote", action="store_true", help="promote to production if dev is not worse")
        _add_config_options(sub, config_cls, PAIR_MODEL_HELP)
        sub.set_defaults(func=train_pairs_command)

    from core.finetune.mlm import MlmTrainingConfig

    encoder = train.add_parser("encoder", help="adapt an encoder to unlabelled domain text (continued MLM "
                               "pre-training); use the result as --base-model",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    encoder.add_argument("--train", required=True, help="texts to train on (.csv with a header, or .jsonl)")
    encoder.add_argument("--dev", required=True, help="held-out texts: masked-token loss/accuracy before and after")
    encoder.add_argument("--text-column", default="text", help="column with the text")
    encoder.add_argument("--name", required=True, help="registry name, e.g. encoder-finance")
    _add_config_options(encoder, MlmTrainingConfig, ENCODER_HELP)
    encoder.set_defaults(func=train_encoder_command)

    soup = commands.add_parser("soup", help="greedy model soup: average the weights of versions of one classifier "
                               "(fine-tunes of one encoder) into a new version, ingredients picked on dev",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    soup.add_argument("name", help="registry name whose versions are the candidates")
    soup.add_argument("--versions", nargs="+", type=int, required=True, help="candidate version numbers (2 or more)")
    soup.add_argument("--dev", required=True, help="dev data: picks the ingredients, fits the temperature")
    soup.add_argument("--test", help="optional test data, reported only")
    soup.add_argument("--text-column", default="text", help="column with the text")
    soup.add_argument("--label-column", default="label", help="column with the label")
    soup.add_argument("--metric", choices=["accuracy", "macro_f1", "weighted_f1"], default="macro_f1",
                      help="dev metric the greedy steps and promotion compare")
    soup.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    soup.add_argument("--promote", action="store_true", help="promote to production if dev is not worse")
    soup.set_defaults(func=soup_command)

    evaluate = commands.add_parser("eval", help="score a classifier on labelled data")
    evaluate.add_argument("model", help="registry name or artifact folder")
    evaluate.add_argument("--version", default="production", help="version, 'latest' or an alias")
    evaluate.add_argument("--data", required=True, help="labelled data (.csv/.jsonl)")
    evaluate.add_argument("--text-column", default="text")
    evaluate.add_argument("--label-column", default="label")
    evaluate.set_defaults(func=eval_command)

    onnx = commands.add_parser("export-onnx", help="int8 ONNX serving copy of a classifier, used on the CPU only "
                               "when its accuracy on --data stays within --max-drop of PyTorch")
    onnx.add_argument("model", help="registry name or artifact folder")
    onnx.add_argument("--version", default="production", help="version, 'latest' or an alias")
    onnx.add_argument("--data", required=True, help="labelled data to compare on (the dev split)")
    onnx.add_argument("--text-column", default="text")
    onnx.add_argument("--label-column", default="label")
    onnx.add_argument("--max-drop", type=float, default=0.01, help="largest accepted accuracy loss (0.01 = 1 point)")
    onnx.set_defaults(func=export_onnx_command)

    models = commands.add_parser("models", help="the registry").add_subparsers(dest="action", required=True)
    listing = models.add_parser("list", help="list models, versions, aliases and dev metrics")
    listing.add_argument("name", nargs="?", help="only this model")
    listing.add_argument("--json", action="store_true", help="machine-readable cards")
    listing.set_defaults(func=models_list_command)

    promote = commands.add_parser("promote", help="move the production alias if the candidate is not worse on dev")
    promote.add_argument("name")
    promote.add_argument("version", help="version number, vN or latest")
    promote.add_argument("--force", action="store_true", help="promote anyway (recorded in the card)")
    promote.add_argument("--alias", default="production")
    promote.set_defaults(func=promote_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    try:
        return args.func(args)
    except (DataError, ArtifactError, ModelReferenceError, ValueError, CliError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
