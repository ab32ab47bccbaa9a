"""Rasa NLU component: ask core's intent model, served by the action server, for the BANKING77 intent.

Runs inside the Rasa server (Python 3.10, Rasa 3.6), which has no torch, so the model stays in the
project's process and this component calls it over HTTP (``POST /intents`` on the action server,
``CS_INTENTS_URL`` or the ``url`` option). Standard library only. The action server accepts only
calls with its token: the component sends ``Authorization: Bearer $CS_ACTIONS_TOKEN``
(``rasa_project.environment()`` puts the token into the Rasa process's environment).

* Small talk that Rasa's own classifier is sure about (``keep_intents`` at ``keep_threshold`` or
  above, in a message of at most ``keep_max_words`` words) is left alone unless core's model is
  even surer of a banking intent (``override_threshold``:
  Rasa's small classifier calls "Can you tell me the foreign exchange rate?" out of scope, core's
  model says exchange_rate at 0.99; on the project's own small-talk examples core's confidence
  stays below 0.86, e.g. "goodbye" -> terminate_account 0.857). Every other message gets core's
  intent and ranking. If the action server is down, confident small talk still gets its intent.
* Scope (when the action server has a scope model, see ``apps/customer_service/scope.py``): a message
  it calls out of scope gets the intent ``out_of_scope`` (the bot declines and says what it can do),
  one it is unsure about gets ``unsure_scope`` (the bot asks to rephrase and offers the likeliest
  topics), each with confidence 1 (the decision is made; ``scope`` in the parse data has ``p_out``)
  and core's ranking after it. Confident small talk still wins over "unsure", and over "out" only
  when it is a request for a person (``keep_over_scope``): the bot's small talk is among the scope
  model's in-scope examples, so an "out" means Rasa misread the message.
* A form starts only on a confident in-scope intent: a ``form_intents`` intent below
  ``form_threshold`` becomes ``nlu_fallback`` (the answering action decides), its ranking kept.
* An empty or whitespace-only message gets the intent ``empty_message`` (the bot asks for text).
* If the action server does not answer, the message's intent becomes ``service_unavailable`` (a
  rule makes the bot say so and how to reach a person) instead of the bot going silent later,
  when the answering action would fail.
"""

# ruff: noqa: UP006, UP035, UP019, UP045, UP037
# Rasa 3.6 validates its graph from these annotations; keep the typing-module spelling it expects.
from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

logger = logging.getLogger(__name__)
UNAVAILABLE = "service_unavailable"
EMPTY = "empty_message"
SCOPE_INTENTS = {"out": "out_of_scope", "unsure": "unsure_scope"}  # scope decision -> intent ("in": core's intent)
FALLBACK = "nlu_fallback"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class CoreIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "url": "http://127.0.0.1:5055/intents",  # overridden by the CS_INTENTS_URL environment variable
            "timeout": 5.0,                          # seconds per request
            "ranking_length": 10,
            "keep_intents": [],                      # Rasa's own intents that win when confident
            "keep_threshold": 0.5,
            "keep_max_words": 12,                    # ... in messages of at most this many words
            "keep_over_scope": ["human_handoff", "out_of_scope"],  # kept even when the scope model says "out"
            "override_threshold": 0.95,               # core's confidence that overrides confident small talk
            "unavailable_intent": UNAVAILABLE,
            "form_intents": [],                      # intents that start a form ...
            "form_threshold": 0.8,                   # ... only at this confidence or above
        }

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.component_config = {**self.get_default_config(), **config}
        self.url = os.environ.get("CS_INTENTS_URL") or self.component_config["url"]
        token = os.environ.get("CS_ACTIONS_TOKEN")
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.keep = set(self.component_config["keep_intents"])

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "CoreIntentClassifier":
        return cls(config)

    def _kept(self, message: Message) -> bool:
        """Confident small talk, which is short: Rasa's classifier learnt it from short phrases, and on a long
        message its character n-grams say little ("my card blah blah ..." reads as goodbye)."""
        intent = message.get(INTENT) or {}
        return (intent.get(INTENT_NAME_KEY) in self.keep
                and (intent.get(PREDICTED_CONFIDENCE_KEY) or 0.0) >= self.component_config["keep_threshold"]
                and len(str(message.get(TEXT) or "").split()) <= self.component_config["keep_max_words"])

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if isinstance(text, str) and not text.strip():
                self._set(message, [{INTENT_NAME_KEY: EMPTY, PREDICTED_CONFIDENCE_KEY: 1.0}])
        todo = [m for m in messages if isinstance(m.get(TEXT), str) and m.get(TEXT).strip()]
        if not todo:
            return messages
        rankings, scopes = self._ask([m.get(TEXT) for m in todo])
        for message, ranking, scope in zip(todo, rankings or [None] * len(todo), scopes or [None] * len(todo),
                                           strict=True):
            if scope is not None:
                message.set("scope", scope, add_to_output=True)
            if self._kept(message) and not self._overrides(ranking) and not self._scope_overrides(message, scope):
                continue  # confident small talk (also when the intent service is down)
            if ranking is None:
                self._set(message, [{INTENT_NAME_KEY: self.component_config["unavailable_intent"],
                                     PREDICTED_CONFIDENCE_KEY: 1.0}])
                continue
            ranked = [{INTENT_NAME_KEY: r["name"], PREDICTED_CONFIDENCE_KEY: float(r["confidence"])} for r in ranking]
            decided = SCOPE_INTENTS.get(scope.get("decision")) if isinstance(scope, dict) else None
            if decided:
                self._set(message, [{INTENT_NAME_KEY: decided, PREDICTED_CONFIDENCE_KEY: 1.0}] + ranked)
            elif ranked and self._unsure_form(ranked[0]):
                self._set(message, [{INTENT_NAME_KEY: FALLBACK, PREDICTED_CONFIDENCE_KEY: 1.0}] + ranked)
            elif ranked:  # an empty ranking: the model knows nothing about it, keep Rasa's own intent
                self._set(message, ranked)
        return messages

    def _scope_overrides(self, message: Message, scope: Optional[Dict[Text, Any]]) -> bool:
        """Whether the scope model's "out" beats Rasa's small talk: the small talk the bot knows is among the
        scope model's in-scope examples, so "out" means Rasa's n-grams misread it ("yes, and who won the
        cup?" is no plain yes). A request for a person is honoured whatever the scope model says."""
        intent = (message.get(INTENT) or {}).get(INTENT_NAME_KEY)
        return (isinstance(scope, dict) and scope.get("decision") == "out"
                and intent not in self.component_config["keep_over_scope"])

    def _unsure_form(self, best: Dict[Text, Any]) -> bool:
        """Whether the best intent would start a form without being confident enough to."""
        return (best[INTENT_NAME_KEY] in self.component_config["form_intents"]
                and best[PREDICTED_CONFIDENCE_KEY] < self.component_config["form_threshold"])

    def _overrides(self, ranking: Optional[List[Dict[Text, Any]]]) -> bool:
        """Whether core's best intent is sure enough to win over Rasa's confident small talk."""
        return bool(ranking) and float(ranking[0]["confidence"]) >= self.component_config["override_threshold"]

    @staticmethod
    def _set(message: Message, ranked: List[Dict[Text, Any]]) -> None:
        message.set(INTENT, ranked[0], add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranked, add_to_output=True)

    def _ask(self, texts: List[Text]) -> Tuple[Optional[List[List[Dict[Text, Any]]]], Optional[List[Dict]]]:
        """Core's rankings and scope decisions for ``texts``; (None, None) when the service does not answer."""
        body = json.dumps({"texts": texts, "n": self.component_config["ranking_length"]}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.component_config["timeout"]) as response:
                answer = json.loads(response.read().decode("utf-8"))
            rankings, scopes = answer["rankings"], answer.get("scopes")
        except (urllib.error.URLError, OSError, ValueError, KeyError, AttributeError) as error:
            logger.warning("intent service %s did not answer (%s); marking the message %s", self.url, error,
                           self.component_config["unavailable_intent"])
            return None, None
        if not isinstance(rankings, list) or len(rankings) != len(texts):
            logger.warning("intent service %s answered %s rankings for %d texts", self.url,
                           len(rankings) if isinstance(rankings, list) else "no", len(texts))
            return None, None
        if not isinstance(scopes, list) or len(scopes) != len(texts):
            scopes = None  # no scope model (or a malformed answer): core's intents alone, as before
        return rankings, scopes

    def process_training_data(self, training_data):  # not trainable: nothing to add to the training data
        return training_data
