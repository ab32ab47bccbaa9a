"""Model soups on the packaged MiniLM: the average is exact, harmful ingredients stay out, bad input is named.

The ingredients are built, not trained, so the test is quick and its outcome known: a probe
head (logistic regression on frozen MiniLM features) is a good classifier, the same head
negated is a harmful one (averaged with the good one, the head becomes zero and predicts one
class for everything), and a slightly nudged encoder is a near-copy of the good model.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoTokenizer

from core.artifacts import ModelCard, data_record, read_card
from core.classifier_model import PooledClassifier
from core.cli import main
from core.data.labelled import LabelledTexts
from core.finetune.soup import SoupError, average_weights, greedy_soup
from core.inference.classifier import TextClassifier
from core.metrics import classification_metrics
from core.model_refs import resolve_model
from core.registry import Registry
from tests.core.retrieval_data import labelled_split

pytestmark = pytest.mark.slow


def _split(name: str) -> LabelledTexts:
    texts, labels = labelled_split(name)
    return LabelledTexts(texts, labels, source=name)


@pytest.fixture(scope="module")
def ingredients(offline: None) -> dict[str, PooledClassifier]:
    train = _split("train")
    labels = sorted(set(train.labels))
    good = PooledClassifier.from_encoder(resolve_model("all-MiniLM-L6-v2").location, labels, max_length=32).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2").location)
    batch = tokenizer(train.texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        features = good.embed(batch["input_ids"], batch["attention_mask"]).numpy()
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(features, [labels.index(y) for y in train.labels])
    good.head.weight.data.copy_(torch.as_tensor(probe.coef_, dtype=torch.float32))
    good.head.bias.data.copy_(torch.as_tensor(probe.intercept_, dtype=torch.float32))

    flipped = copy.deepcopy(good)
    flipped.head.weight.data.mul_(-3.0)  # averaged with one or two good heads: -W or -W/3, still flipped
    flipped.head.bias.data.mul_(-3.0)
    nudged = copy.deepcopy(good)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in nudged.encoder.parameters():
            parameter.add_(1e-3 * torch.randn(parameter.shape, generator=generator))
    return {"good": good, "flipped": flipped, "nudged": nudged, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def registry(ingredients: dict, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry with v1 good, v2 flipped, v3 nudged, each carded with a small train file."""
    root = tmp_path_factory.mktemp("soup")
    train = root / "train.csv"
    train.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(*labelled_split("train"),
                                                                             strict=True)))
    dev = root / "dev.csv"
    dev.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(*labelled_split("dev"), strict=True)))
    registry = Registry(root / "models")
    for name in ("good", "flipped", "nudged"):
        model = ingredients[name]
        card = ModelCard(name="topics", task="classifier", base_model="all-MiniLM-L6-v2", labels=model.labels,
                         data=[data_record(train, "train")], hyperparameters={"which": name})
        registry.save("topics", lambda path, m=model: m.save(path, ingredients["tokenizer"]), card)
    return registry


def _dev_macro_f1(model: PooledClassifier, tokenizer, dev: LabelledTexts) -> float:
    logits = TextClassifier(model, tokenizer, device="cpu").logits(dev.texts)
    probs = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    return classification_metrics(np.array([model.labels.index(y) for y in dev.labels]), probs)["macro_f1"]


def test_average_is_the_elementwise_mean(ingredients: dict) -> None:
    good, nudged = ingredients["good"], ingredients["nudged"]
    soup = average_weights([good, nudged])
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    expected = (good.state_dict()[name] + nudged.state_dict()[name]) / 2
    assert torch.allclose(soup.state_dict()[name], expected, atol=1e-7)
    assert torch.allclose(average_weights([good, ingredients["flipped"]]).head.weight, -good.head.weight, atol=1e-6)
    assert soup is not good and torch.equal(good.state_dict()[name], ingredients["good"].state_dict()[name])


def test_greedy_soup_leaves_out_a_harmful_ingredient(registry: Registry, ingredients: dict) -> None:
    dev = _split("dev")
    candidates = {f"v{v}": registry.path("topics", v) for v in (1, 2, 3)}
    soup = greedy_soup(candidates, dev, device="cpu")
    assert "v2" not in soup.ingredients and "v1" in soup.ingredients
    assert [step["ingredient"] for step in soup.steps][-1] == "v2"  # the worst alone is tried last
    good_alone = _dev_macro_f1(ingredients["good"], ingredients["tokenizer"], dev)
    assert soup.metrics["dev"]["macro_f1"] >= good_alone - 1e-9
    assert soup.metrics["temperature"] > 0


def test_mismatched_labels_are_named(ingredients: dict) -> None:
    other = copy.deepcopy(ingredients["good"])
    other.labels = [*other.labels[:-1], "something-else"]
    with pytest.raises(SoupError, match="something-else"):
        average_weights([ingredients["good"], other])


def test_dev_label_unknown_to_the_candidates_is_named(registry: Registry) -> None:
    dev = LabelledTexts(["where is my parcel"], ["weather"], "dev")
    with pytest.raises(SoupError, match="weather"):
        greedy_soup({f"v{v}": registry.path("topics", v) for v in (1, 3)}, dev, device="cpu")


def test_cli_writes_a_soup_version_with_its_ingredients(registry: Registry, capsys: pytest.CaptureFixture) -> None:
    dev_file = registry.root.parent / "dev.csv"
    code = main(["--registry", str(registry.root), "soup", "topics", "--versions", "1", "2", "3",
                 "--dev", str(dev_file), "--test", str(dev_file), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    path = registry.path("topics", "latest")
    card = read_card(path)
    assert card.hyperparameters["method"] == "greedy_soup" and "v2" not in card.hyperparameters["ingredients"]
    assert {"train", "dev", "test"} <= {record["role"] for record in card.data}
    assert card.metrics["test"]["accuracy"] == pytest.approx(card.metrics["dev"]["accuracy"])  # same file
    assert TextClassifier.load(path, device="cpu").classes == card.labels


def test_cli_refuses_a_single_candidate(registry: Registry, capsys: pytest.CaptureFixture) -> None:
    dev_file = registry.root.parent / "dev.csv"
    code = main(["--registry", str(registry.root), "soup", "topics", "--versions", "1", "--dev", str(dev_file)])
    assert code == 1 and "at least 2 candidates" in capsys.readouterr().err


def test_cli_saves_nothing_when_no_average_beats_the_best_alone(registry: Registry,
                                                                 capsys: pytest.CaptureFixture) -> None:
    dev_file = registry.root.parent / "dev.csv"
    before = registry.versions("topics")
    code = main(["--registry", str(registry.root), "soup", "topics", "--versions", "1", "2", "--dev", str(dev_file),
                 "--device", "cpu"])
    assert code == 0 and "no soup saved" in capsys.readouterr().out
    assert registry.versions("topics") == before
