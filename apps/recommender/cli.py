"""``python -m apps.recommender``: serve, load, recommend, the demo, and the HTTP API's keys.

Every command works on the store folder ``--store`` (default ``TEXTML_RECOMMENDER_DIR`` or
``var/recommender``): the SQLite catalog, the index snapshot and the learned ranker. ``serve`` and
``keys`` use the API keys file ``--keys-file`` (default ``TEXTML_RECOMMENDER_API_KEYS_FILE`` or
``$TEXTML_VAR_DIR/recommender/api_keys.json``); requests send a key in the ``X-API-Key`` header.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from apps.recommender.catalog import read_interactions
from apps.recommender.config import RecommenderConfig, api_keys_from_env, config_from_env
from apps.recommender.filters import RequestError
from apps.recommender.items import ItemValidationError
from apps.recommender.keys import KeyStore
from apps.recommender.recommender import ItemNotFoundError, Recommendations, Recommender
from core.data.tables import DataError

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"


def _config(args: argparse.Namespace) -> RecommenderConfig:
    return config_from_env(store_dir=args.store, embedder=args.embedder, device=args.device,
                           api_keys=api_keys_from_env(args.keys_file))


def _print(result: Recommendations, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"items": [asdict(i) for i in result.items], "unknown_ids": result.unknown_ids,
                          "note": result.note}, indent=2))
        return
    if result.note:
        print(f"  note: {result.note}")
    if result.unknown_ids:
        print(f"  unknown ids (ignored): {', '.join(result.unknown_ids)}")
    for rank, item in enumerate(result.items, start=1):
        print(f"  {rank:2d}. {item.id:<10} {item.title:<40} {item.score:8.3f}  {item.explanation}")


def _filters(args: argparse.Namespace) -> dict:
    filters: dict = {}
    if args.category:
        filters["category"] = args.category
    if args.available:
        filters["available"] = True
    if args.include_seen:
        filters["exclude_seen"] = False
    return filters


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from apps.recommender.api import create_app
    from apps.recommender.handoff import ConnectionHandoff

    config = _config(args)

    def factory() -> Recommender:
        rec = Recommender.load(config)
        if args.demo_if_empty and rec.health()["items"] == 0:
            _load_demo(rec)
        return rec

    if args.workers < 1:
        print(f"error: --workers {args.workers}; expected 1 or more", file=sys.stderr)
        return 2
    if args.workers == 1:
        uvicorn.run(create_app(factory=factory, api_keys=config.api_keys), host=args.host, port=args.port,
                    log_level=args.log_level.lower())
        return 0
    # One process accepts and hands each connection to the least-busy worker (see apps.recommender.handoff);
    # each worker loads the store and catches up with the others' writes per request (see Recommender.sync).
    if args.demo_if_empty:
        factory().close()
    return ConnectionHandoff(config, args.workers, args.host, args.port, log_level=args.log_level).serve_forever()


def cmd_load(args: argparse.Namespace) -> int:
    rec = Recommender.load(_config(args))
    try:
        result = rec.load_file(args.file)
        print(f"loaded {len(result.ids)} item(s) from {args.file} (catalog change {result.seq}); "
              f"{rec.health()['items']} items in the catalog")
        if args.interactions:
            count = rec.add_interactions(read_interactions(args.interactions))
            print(f"added {count} interaction(s) from {args.interactions}")
            ranker = rec.fit_ranker()
            print(f"ranker: {ranker.source} {ranker.info.get('weights', '')}")
    finally:
        rec.close()
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    rec = Recommender.load(_config(args))
    try:
        history = [h for h in (args.history or "").split(",") if h.strip()]
        _print(rec.recommend(history, args.query, args.k, _filters(args)), args.json)
    finally:
        rec.close()
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    rec = Recommender.load(_config(args))
    try:
        _print(rec.similar(args.item_id, args.k), args.json)
    finally:
        rec.close()
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    rec = Recommender.load(_config(args))
    try:
        result = rec.delete_items(args.ids)
        print(f"deleted {result.ids}; not in the catalog: {result.unknown_ids}")
    finally:
        rec.close()
    return 0


def _load_demo(rec: Recommender):
    """The shipped demo catalog and interaction log, and a ranker fitted on it."""
    rec.load_file(DEMO_DIR / "items.jsonl")
    rec.add_interactions(read_interactions(DEMO_DIR / "interactions.csv"))
    return rec.fit_ranker()


def cmd_demo(args: argparse.Namespace) -> int:
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="recommender-demo-"))
    config = config_from_env(store_dir=store, embedder=args.embedder, device=args.device)
    print(f"demo store: {store}")
    rec = Recommender.load(config)
    try:
        ranker = _load_demo(rec)
        health = rec.health()
        print(f"catalog: {health['items']} items, {health['users_in_log']} users in the log, "
              f"{health['index_kind']} index, encoder {health['encoder']}, {ranker.source} ranker")
        for name, user in json.loads((DEMO_DIR / "demo_users.json").read_text()).items():
            print(f"\n{name}: history={user['history']} query={user['query']!r} filters={user.get('filters', {})}")
            _print(rec.recommend(user["history"], user["query"], args.k, user.get("filters")), False)
        print("\nmore like 'run-003' (Summit Hiking Boot):")
        _print(rec.similar("run-003", args.k), False)
        new = {"id": "new-001", "title": "Glacier Thermal Sleeping Pad", "category": "outdoor",
               "tags": ["camping", "warm", "sleeping"], "text": "Insulated sleeping pad that keeps you warm at night"}
        rec.upsert_items([new])
        print("\nafter adding 'new-001' (no interactions yet), query 'warm sleeping pad for camping':")
        _print(rec.recommend([], "warm sleeping pad for camping", args.k), False)
    finally:
        rec.close()
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = api_keys_from_env(args.keys_file)
    record, key = KeyStore(settings.keys_file).create(args.name, args.rate)
    rate = record.rate_per_minute or f"the server's default, {settings.rate_per_minute}"
    # the key alone on stdout (KEY=$(python -m apps.recommender keys create NAME)); the rest for the person
    print(f"created API key {record.id} for {record.name!r} ({rate} requests per minute) in "
          f"{settings.keys_file}.\nThis is the only time the key is shown; send it in the X-API-Key header:",
          file=sys.stderr)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    settings = api_keys_from_env(args.keys_file)
    records = KeyStore(settings.keys_file).list()
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(r).items() if k != "sha256"} for r in records], indent=2))
        return 0
    if not records:
        print(f"no API keys in {settings.keys_file}; create one with `python -m apps.recommender keys create NAME`")
        return 0
    print(f"{'id':<9} {'name':<24} {'created':<26} {'revoked':<26} rate/min")
    for r in records:
        rate = str(r.rate_per_minute) if r.rate_per_minute else f"{settings.rate_per_minute} (default)"
        print(f"{r.id:<9} {r.name:<24} {r.created:<26} {r.revoked or '-':<26} {rate}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = KeyStore(api_keys_from_env(args.keys_file).keys_file)
    record = store.revoke(args.id)
    print(f"API key {record.id} ({record.name!r}) is revoked since {record.revoked}; "
          "running servers refuse it from their next request")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.recommender", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None,
                        help="store folder (catalog, index, ranker); default TEXTML_RECOMMENDER_DIR or var/recommender")
    parser.add_argument("--embedder", default=None,
                        help="embedder: model reference or artifact folder, 'hashing' for the model-free encoder; "
                             "default: registry production 'recommender-embedder', else all-MiniLM-L6-v2")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1; default: CUDA when present")
    parser.add_argument("--keys-file", type=Path, default=None,
                        help="the HTTP API's keys (hashed); default TEXTML_RECOMMENDER_API_KEYS_FILE or "
                             "$TEXTML_VAR_DIR/recommender/api_keys.json (TEXTML_VAR_DIR: var/)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8300, help="port (default 8300)")
    serve.add_argument("--demo-if-empty", action="store_true",
                       help="load the shipped demo catalog when the store holds no items (for make up)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1); one per CPU core serves more concurrent requests: "
                            "each new connection goes to the worker serving the fewest, each worker holds its "
                            "own copy of the index")
    serve.set_defaults(func=cmd_serve)

    load = sub.add_parser("load", help="upsert items from a CSV/JSONL file (all rows validated first)")
    load.add_argument("file", type=Path, help="items: id,title[,text,tags,category,price,available,attributes]")
    load.add_argument("--interactions", type=Path, default=None,
                      help="also add interactions (user_id,item_id[,ts,weight]) and re-fit the ranker")
    load.set_defaults(func=cmd_load)

    for name, helptext in (("recommend", "recommend for a history and/or a query"),
                           ("similar", "items like one item")):
        command = sub.add_parser(name, help=helptext)
        if name == "recommend":
            command.add_argument("--history", default="", help="comma-separated item ids, oldest first")
            command.add_argument("--query", default=None, help="free-text query")
            command.add_argument("--category", action="append", help="only this category (repeatable)")
            command.add_argument("--available", action="store_true", help="only available items")
            command.add_argument("--include-seen", action="store_true", help="allow items from the history")
            command.set_defaults(func=cmd_recommend)
        else:
            command.add_argument("item_id", help="the item to find neighbours of")
            command.set_defaults(func=cmd_similar)
        command.add_argument("--k", type=int, default=10, help="how many results (default 10)")
        command.add_argument("--json", action="store_true", help="print JSON")

    delete = sub.add_parser("delete", help="delete items by id")
    delete.add_argument("ids", nargs="+", help="item ids")
    delete.set_defaults(func=cmd_delete)

    demo = sub.add_parser("demo", help="load the shipped demo catalog and print recommendations with explanations")
    demo.add_argument("--k", type=int, default=5, help="results per user (default 5)")
    demo.set_defaults(func=cmd_demo)

    keys = sub.add_parser("keys", help="create, list and revoke the HTTP API's keys (X-API-Key header)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="make a key and print it, once (only its hash is kept)")
    create.add_argument("name", help="who or what uses the key, such as shop-frontend (unique among active keys)")
    create.add_argument("--rate", type=int, default=None,
                        help="requests per minute for this key (default: the server's, "
                             "TEXTML_RECOMMENDER_RATE_PER_MINUTE or 6000)")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="id, name, created, revoked and rate of every key (never the key)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id; running servers refuse it at once")
    revoke.add_argument("id", help="the key's id, from `keys list` (8 hex characters)")
    revoke.set_defaults(func=cmd_keys_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return args.func(args)
    except (ItemValidationError, DataError, RequestError, ItemNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
