"""``python -m apps.customer_service``: ingest the knowledge base, train and run the bot, list tickets, chat, report.

Settings come from the environment (see ``apps/customer_service/settings.py``); the options here
override them for one command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apps.customer_service.settings import BotSettings, settings_from_env


def _settings(args: argparse.Namespace) -> BotSettings:
    settings = settings_from_env()
    overrides = {key: value for key, value in {
        "kb_dir": getattr(args, "kb", None), "state_dir": getattr(args, "state", None),
        "embedder": getattr(args, "embedder", None)}.items() if value is not None}
    return replace(settings, **overrides)


def cmd_ingest(args: argparse.Namespace) -> int:
    from apps.customer_service.ingest import ingest
    from apps.customer_service.kb_index import IngestConfig

    settings = _settings(args)
    card = ingest(settings.kb_dir, settings.index_dir, settings.embedder,
                  IngestConfig(max_words=args.max_words, index_questions=not args.no_questions))
    print(json.dumps(card, indent=2) if args.json else
          f"indexed {card['documents']} documents ({card['chunks']} passages, {card['entries']} entries, "
          f"{len(card['intents'])} intents) with {card['embedder']} into {settings.index_dir}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from apps.customer_service.action_server import load_services
    from apps.customer_service.ingest import ensure_index

    settings = _settings(args)
    ensure_index(settings.kb_dir, settings.index_dir, settings.embedder)
    answer = load_services(settings).retriever.answer(args.question)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
    elif answer.best is None:
        print("no passage found")
    else:
        print(f"[{answer.decision}, confidence {answer.confidence:.3f}] {answer.best.chunk.text}\n"
              f"Source: {answer.best.chunk.title}")
    return 0


def cmd_tickets(args: argparse.Namespace) -> int:
    from apps.customer_service.tickets import TicketStore

    if args.action is not None:
        return cmd_ticket(args)
    tickets = TicketStore(_settings(args).tickets_db).list(None if args.status == "all" else args.status)
    if args.json:
        print(json.dumps([ticket.to_dict() for ticket in tickets], indent=2, ensure_ascii=False))
        return 0
    if not tickets:
        print(f"no {args.status} tickets")
    for ticket in tickets:
        last = next((t["text"] for t in reversed(ticket.transcript) if t["speaker"] == "user"), "")
        print(f"{ticket.number}  {ticket.created_at}  {ticket.status:6}  {ticket.sender_id}  {ticket.reason}\n"
              f"          last message: {last[:100]}")
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    """``tickets show|reply|close ID``: one ticket, through the hand-over (Rasa must be running)."""
    from apps.customer_service.handover import handover_for
    from apps.customer_service.rasa_api import RasaApiError
    from apps.customer_service.tickets import parse_ticket_id

    handover = handover_for(_settings(args))
    ticket_id = parse_ticket_id(args.id)
    if args.action == "show":
        try:
            ticket, outcome = handover.show(ticket_id), None
        except RasaApiError as error:  # the stored transcript still helps; say what it lacks
            ticket, outcome = handover.tickets.get(ticket_id), None
            print(f"warning: {error}; showing the ticket as stored, without the customer's latest messages",
                  file=sys.stderr)
    elif args.action == "reply":
        outcome = handover.reply(ticket_id, args.text)
        ticket = outcome.ticket
    else:
        outcome = handover.close(ticket_id)
        ticket = outcome.ticket
    if args.json:
        shown = {"ticket": ticket.to_dict()}
        if outcome is not None:
            shown.update(channel=outcome.channel, pushed=outcome.pushed)
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    if outcome is None:
        print(f"{ticket.number}  {ticket.status}  {ticket.sender_id}  opened {ticket.created_at}  ({ticket.reason})")
        for turn in ticket.transcript:
            print(f"  {turn['speaker']:>5}: {turn['text']}")
        return 0
    done = "sent to" if args.action == "reply" else "closed; the bot is back in"
    where = (f"the customer's {outcome.channel} chat" if outcome.pushed else
             f"the conversation (its channel, {outcome.channel or 'unknown'}, cannot show messages the customer did "
             "not ask for: they see it only when their client reads the conversation)")
    print(f"{ticket.number}: {done} {where}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from apps.customer_service.rasa_project import train

    print(f"trained {train(_settings(args), config=args.config)}")
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    from apps.customer_service.action_server import serve
    from apps.customer_service.ingest import ensure_index

    settings = _settings(args)
    ensure_index(settings.kb_dir, settings.index_dir, settings.embedder)
    serve(settings)
    return 0


def cmd_rasa(args: argparse.Namespace) -> int:
    from apps.customer_service.rasa_project import (
        assemble,
        environment,
        needs_training,
        server_command,
        store_passwords,
        train,
    )

    settings = _settings(args)
    store_passwords(settings)  # a configured data store without a password fails before any training
    if needs_training(settings, assemble(settings)):
        train(settings)
    project = assemble(settings)
    command = server_command(settings)
    os.chdir(project)
    os.execve(command[0], command, environment(settings, project))
    return 1  # not reached


def cmd_chat(args: argparse.Namespace) -> int:
    from apps.customer_service.chat import chat

    chat(args.url or _settings(args).rasa_url, args.sender)
    return 0


def cmd_thresholds(args: argparse.Namespace) -> int:
    from apps.customer_service.settings import REPO_ROOT
    from apps.customer_service.tuning import import_bench_fallback, tuned_file

    path = tuned_file(dict(os.environ), Path(os.environ.get("TEXTML_VAR_DIR", REPO_ROOT / "var")))
    if args.import_bench:
        entry = import_bench_fallback(args.import_bench, path)
        print(f"recorded intent fallback {entry['threshold']} for {entry['model']} in {path}")
    settings = _settings(args)
    scale = "rerank" if settings.reranker else "cosine"
    shown = {"tuned_file": str(path), "intent_model": settings.intent_model,
             "intent_fallback": settings.intent_fallback,
             "intent_fallback_source": settings.threshold_sources["intent_fallback"],
             "embedder": settings.embedder, "reranker": settings.reranker, "retrieval_scale": scale,
             "answer": getattr(settings.retrieval, scale).answer, "clarify": getattr(settings.retrieval, scale).clarify,
             "retrieval_source": settings.threshold_sources["retrieval"],
             "intent_weight": settings.retrieval.intent_weight,
             "fused_answer": settings.retrieval.fused.answer, "fused_clarify": settings.retrieval.fused.clarify,
             "intent_fusion_source": settings.threshold_sources.get("intent_fusion",
                                                                    "off (not tuned for these models)")}
    print(json.dumps(shown, indent=2))
    return 0


def iso_moment(value: str) -> datetime:
    """An ``--since``/``--until`` value: an ISO 8601 date or date and time; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date or time; expected e.g. 2026-11-01, "
                                         "2026-11-01T09:30 or 2026-11-01T09:30:00+01:00 (no zone: UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def positive_days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not 0 < days < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days; expected a number > 0, e.g. 7")
    return days


def cmd_report(args: argparse.Namespace) -> int:
    from apps.customer_service.events import EventLog
    from apps.customer_service.report import build_report, format_report

    settings = _settings(args)
    until = args.until or datetime.now(UTC)
    since = args.since if args.since is not None else until - timedelta(days=args.days)
    if since >= until:
        print(f"error: the period is empty: --since {since.isoformat()} is not before {until.isoformat()}",
              file=sys.stderr)
        return 2
    if not settings.events_db.is_file():
        print(f"no event log at {settings.events_db} yet: the action server writes it as the bot decides",
              file=sys.stderr)
    decisions = EventLog(settings.events_db).read(since, until) if settings.events_db.is_file() else []
    encode = None
    if any(d.decision != "answer" for d in decisions):
        from core.inference.embedder import Embedder

        encode = Embedder.load(settings.embedder).encode
    report = build_report(decisions, encode, since, until, top=args.top, similarity=args.similarity)
    report["embedder"] = settings.embedder if encode else None
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def cmd_scope(args: argparse.Namespace) -> int:
    from apps.customer_service.scope import ScopeModel
    from apps.customer_service.scope_training import train_scope

    settings = _settings(args)
    folder = args.output or settings.scope_dir
    if folder is None:
        print("error: CS_SCOPE_MODEL=none turns the scope model off; unset it or pass --output", file=sys.stderr)
        return 2
    if args.scope_command == "show":
        print(json.dumps(asdict(ScopeModel.load(folder).card), indent=2))
        return 0
    if args.scope_command == "check":
        from core.inference.embedder import Embedder

        model = ScopeModel.load(folder)
        encode = Embedder.load(model.card.embedder).encode
        for text, decision in zip(args.texts, model.decide(args.texts, encode), strict=True):
            print(f"{decision.decision:6s} p_out={decision.p_out:.3f}  {text}")
        return 0
    model = train_scope(settings, args.in_budget, args.decline_budget, folder,
                        log=lambda line: print(line, file=sys.stderr))
    limits = model.card.thresholds
    print(f"saved {folder}: decline at p_out >= {limits.decline:.3f}, rephrase at >= {limits.unsure:.3f}; dev: "
          f"{model.card.figures}; restart the action server to use it")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from apps.customer_service.demo import run_demo

    run_demo(_settings(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.customer_service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, help="state folder: index, tickets, Rasa build (default "
                                                   "var/customer_service or CS_STATE_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="parse, chunk, embed and index the knowledge base (atomic swap)")
    p.add_argument("--kb", type=Path, help="knowledge-base folder (default apps/customer_service/knowledge)")
    p.add_argument("--embedder", help="embedder artifact folder or model reference (default: registry "
                                      "kb-embedder, else all-MiniLM-L6-v2)")
    p.add_argument("--max-words", type=int, default=80, help="passage length cap in words (default 80)")
    p.add_argument("--no-questions", action="store_true", help="index passages only, not the example questions")
    p.add_argument("--json", action="store_true", help="print the index card as JSON")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="answer one question from the knowledge base (retrieval only, no Rasa)")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the decision, passage, source and options as JSON")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("tickets", help="hand-off tickets: list them (open by default); show, reply to or close one",
                       description="Without a command: list tickets. show/reply/close talk to the running Rasa "
                                   "server: the reply reaches the customer's chat, close gives the conversation "
                                   "back to the bot. ID: 42 or T-000042.")
    p.add_argument("--status", choices=["open", "closed", "all"], default="open", help="which tickets to list")
    p.add_argument("--json", action="store_true", help="print as JSON (tickets with their transcripts)")
    p.set_defaults(func=cmd_tickets, action=None)
    ticket_commands = p.add_subparsers(dest="action", metavar="{show,reply,close}")
    for name, text in (("show", "a ticket with its masked transcript, the customer's messages since the hand-off "
                                "included"),
                       ("reply", "send a person's reply to the customer (masked, kept in the transcript)"),
                       ("close", "close a ticket: the bot says it is back and answers again")):
        q = ticket_commands.add_parser(name, help=text, description=text)
        q.add_argument("id", metavar="ID", help="ticket id: 42 or T-000042")
        if name == "reply":
            q.add_argument("text", metavar="TEXT", help="the reply, in quotes")
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS,  # keeps `tickets --json show`
                       help="print the ticket (and where the message went) as JSON")

    p = sub.add_parser("train", help="assemble the Rasa project from the knowledge base and run `rasa train`")
    p.add_argument("--config", type=Path, help="a Rasa config.yml to train with instead of the shipped one")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("actions", help="run the action server (actions, /intents, web chat page at /)")
    p.set_defaults(func=cmd_actions)

    p = sub.add_parser("rasa", help="run the Rasa server (REST + socket.io; tracker store: CS_TRACKER_STORE, "
                       "SQLite by default); trains if needed")
    p.set_defaults(func=cmd_rasa)

    p = sub.add_parser("thresholds", help="show the thresholds in effect and where they come from (tuned on dev "
                                          "by `make bench-bot`, environment, or default)")
    p.add_argument("--import-bench", type=Path, metavar="FIGURES",
                   help="first record the intent fallback threshold tuned on dev from a bench-bot figures file "
                        "(var/bench/bot.json: fallback_threshold_dev.answer for its intent_model)")
    p.set_defaults(func=cmd_thresholds)

    p = sub.add_parser("report", help="what customers asked in a period: answer/clarify/decline/hand-off shares, "
                                      "hand-off reasons, the most frequent unanswered questions grouped by meaning")
    period = p.add_mutually_exclusive_group()
    period.add_argument("--since", type=iso_moment, metavar="ISO",
                        help="start of the period: an ISO 8601 date or time, e.g. 2026-11-01 (no zone: UTC)")
    period.add_argument("--days", type=positive_days, default=7.0,
                        help="the period is the last N days (default 7)")
    p.add_argument("--until", type=iso_moment, metavar="ISO", help="end of the period (default now)")
    p.add_argument("--top", type=int, default=10, help="groups of unanswered questions to show (default 10)")
    p.add_argument("--similarity", type=float, default=0.4,
                   help="how alike (average cosine, with the bot's embedder) questions in a group are (default 0.4; "
                        "higher: smaller, tighter groups)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("scope", help="the in / out of scope model: train it (BANKING77 + clinc150_oos from "
                                     "TEXTML_DATASETS_DIR), show its card, or check texts",
                       description="train: fit the scope model with the bot's embedder and save it to "
                                   "CS_SCOPE_MODEL (default <state>/scope); show: print its card; check TEXT...: "
                                   "its decision for each text.")
    p.add_argument("scope_command", choices=["train", "show", "check"], help="what to do")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to check (check only)")
    p.add_argument("--output", type=Path, help="model folder (default CS_SCOPE_MODEL, else <state>/scope)")
    p.add_argument("--in-budget", type=float, default=0.03,
                   help="share of in-scope dev questions that may be declined or asked to rephrase (default 0.03)")
    p.add_argument("--decline-budget", type=float, default=0.01,
                   help="share of in-scope dev questions that may be declined (default 0.01)")
    p.set_defaults(func=cmd_scope)

    p = sub.add_parser("demo", help="ingest/train what is missing, start both servers, run a scripted chat")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("chat", help="chat with the running bot in the terminal")
    p.add_argument("--url", help="Rasa server URL (default http://127.0.0.1:CS_RASA_PORT)")
    p.add_argument("--sender", help="conversation id (default: a new one); reuse one to resume a conversation")
    p.set_defaults(func=cmd_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's URL at INFO, and Rasa's API token travels in the URL (?token=)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
