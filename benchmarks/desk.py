"""The support desk's load time with a realistic amount of data, measured in headless Chromium.

    python -m benchmarks.desk [--decisions 10000] [--tickets 100] [--reloads 5] [--out var/bench/desk.json]

Seeds a fresh state folder with ``--decisions`` decisions spread over the last 24 hours (the
customers' texts are BANKING77 test utterances when ``../shared/datasets`` has them; the mix is
roughly what the bot does: 70% answered, 10% clarified, 7% declined, 12% handed off, 1% unavailable)
and ``--tickets`` open tickets with 6-turn transcripts; starts the real action server on a free
port (MiniLM embedder, no Rasa: the desk reads the event log and the ticket store); logs in at
``/desk/login`` and measures, in Chromium:

* ``cold_ms``: from navigating to ``/desk`` to the page showing every figure, chart and ticket
  (the first ``/desk/data`` of the server, its unanswered-question groups not computed yet);
* ``groups_ms``: from that navigation until the unanswered questions appear (grouping them by
  meaning: embedding every distinct unanswered text once, then clustering);
* ``warm_ms``: the same navigation again (``--reloads`` times; median and max), groups cached;
* ``data_ms``: ``GET /desk/data`` alone over HTTP afterwards (the server's share; median of 10).

Writes the figures as JSON and a screenshot under ``var/screenshots/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from apps.customer_service.events import SCHEMA as EVENTS_SCHEMA
from apps.customer_service.events import Decision, iso, utc_now
from apps.customer_service.ingest import ingest
from apps.customer_service.launch import actions_ready, free_port, start_service, stop_service, wait_until
from apps.customer_service.settings import APP_DIR, REPO_ROOT, BotSettings
from apps.customer_service.sqlite_file import connect
from apps.customer_service.tickets import TicketStore
from apps.customer_service.tokens import staff_token

EMBEDDER = "all-MiniLM-L6-v2"
MIX = [("answer", None, 0.70), ("clarify", None, 0.10), ("decline", None, 0.07),
       ("handoff", "no_confident_answer", 0.07), ("handoff", "customer_asked", 0.05), ("unavailable", None, 0.01)]
CHROMIUM = Path(os.environ.get("CS_CHROMIUM", "/usr/bin/chromium"))


def customer_texts(datasets: Path) -> list[str]:
    """BANKING77 test utterances (real customers' wording), or made-up questions without the datasets."""
    path = datasets / "banking77" / "test.csv"
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            return [row["text"] for row in csv.DictReader(handle)]
    topics = ["card", "transfer", "PIN", "refund", "exchange rate", "top-up", "fee", "account"]
    return [f"question {i} about my {topics[i % len(topics)]}" for i in range(3000)]


def seed(settings: BotSettings, decisions: int, tickets: int, texts: list[str], rng: random.Random) -> None:
    now = utc_now()
    kinds, weights = [(kind, reason) for kind, reason, _ in MIX], [weight for *_, weight in MIX]
    rows = []
    for _ in range(decisions):
        kind, reason = rng.choices(kinds, weights)[0]
        text = "I want to talk to a person" if reason == "customer_asked" else rng.choice(texts)
        made = Decision(kind, text, intent="nlu_fallback", reason=reason, confidence=rng.random(),
                        at=now - timedelta(seconds=rng.uniform(0, 86_400)))
        rows.append((iso(made.at), made.decision, made.intent, made.text, made.reason, made.confidence))
    with connect(settings.events_db, EVENTS_SCHEMA) as db:
        db.executemany("INSERT INTO decisions (at, decision, intent, text, reason, confidence) VALUES (?, ?, ?, ?, ?, "
                       "?)", rows)
    store = TicketStore(settings.tickets_db)
    for i in range(tickets):
        question = rng.choice(texts)
        store.create(f"bench-{i}", "no confident answer in the knowledge base", [
            {"speaker": "user", "text": question}, {"speaker": "bot", "text": "Do you mean one of these topics?"},
            {"speaker": "user", "text": question + " please"}, {"speaker": "bot", "text": "Your ticket number is ..."},
            {"speaker": "user", "text": "my card is 4111 1111 1111 1111"}, {"speaker": "user", "text": "hello?"}])


def measure(url: str, token: str, reloads: int, screenshot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/desk/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/desk")
            page.goto("about:blank")
            started = time.perf_counter()
            page.goto(f"{url}/desk")
            page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
            cold = time.perf_counter() - started
            page.wait_for_selector("#unanswered-list li", timeout=600_000)
            groups = time.perf_counter() - started
            warm = []
            for _ in range(reloads):
                page.goto("about:blank")
                started = time.perf_counter()
                page.goto(f"{url}/desk")
                page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
                page.wait_for_selector("#unanswered-list li", timeout=120_000)
                warm.append(time.perf_counter() - started)
            shown = page.locator("#ticket-list article").count()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return {"cold_ms": round(1000 * cold), "groups_ms": round(1000 * groups),
            "warm_ms": {"median": round(1000 * statistics.median(warm)), "max": round(1000 * max(warm))},
            "tickets_shown": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=10_000, help="decisions in the event log (last 24 h)")
    parser.add_argument("--tickets", type=int, default=100, help="open tickets")
    parser.add_argument("--reloads", type=int, default=5, help="warm page loads to time")
    parser.add_argument("--datasets", type=Path, default=REPO_ROOT.parent / "shared" / "datasets",
                        help="folder with banking77/test.csv (the customers' texts)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "bench" / "desk.json", help="results JSON")
    parser.add_argument("--screenshot", type=Path, default=REPO_ROOT / "var" / "screenshots" / "desk-load.png")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    settings = BotSettings(state_dir=state, actions_port=free_port())
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(settings.actions_port),
           "CS_EMBEDDER": EMBEDDER, "CS_RERANKER": "none", "CS_INTENT_MODEL": "retrieval", "HF_HUB_OFFLINE": "1",
           "CS_TUNED_FILE": str(state / "tuned.json"), "TEXTML_NUM_THREADS": "1"}
    print(f"seeding {args.decisions} decisions and {args.tickets} tickets in {state}")
    seed(settings, args.decisions, args.tickets, customer_texts(args.datasets), random.Random(0))
    ingest(APP_DIR / "knowledge", settings.index_dir, EMBEDDER)
    log = state / "actions.log"
    process = start_service("actions", log, env)
    try:
        wait_until(lambda: actions_ready(settings.actions_url), process, log, "action server")
        token = staff_token(settings)
        figures = measure(settings.actions_url, token, args.reloads, args.screenshot)  # first: groups not cached
        data = []
        for _ in range(10):
            started = time.perf_counter()
            answer = httpx.get(f"{settings.actions_url}/desk/data", headers={"Authorization": f"Bearer {token}"},
                               timeout=120)
            answer.raise_for_status()
            data.append(time.perf_counter() - started)
    finally:
        stop_service(process)
    result = {"decisions": args.decisions, "tickets": args.tickets, **figures,
              "data_ms": round(1000 * statistics.median(data)), "screenshot": str(args.screenshot),
              "load_average": os.getloadavg()[0], "measured_at": iso(utc_now())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
