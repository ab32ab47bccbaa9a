"""Protocols A and B of ../shared/BENCHMARKS.md with every peer in one run.

Protocol A rows (each ``{hr10, ndcg10, cold_hr10, cold_ndcg10, users, cold_users, cold_hits,
dev: {...}}``, the top level being test): popular, itemknn, itemknn_recent, implicit_als,
implicit_bpr, lenskit_ease, sasrec, text_base (and text_finetuned with an embedder artifact),
ranker. Every tuned method picks its setting on dev; test is computed once, for that setting.
Protocol B rows per split: random, text_base (user = mean of history) and text_base_recent.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from benchmarks.movielens import load_protocol_a, load_protocol_b
from benchmarks.recommender_peers import classic, implicit_peers, lenskit_ease, text_mean
from benchmarks.recommender_ranker import app_ranker
from benchmarks.recommender_sasrec import sasrec
from benchmarks.recommender_text import CachedEncoder, finetune, protocol_b, tuned_encoder

log = logging.getLogger("benchmarks.recommender")


def _row(result: dict) -> dict:
    """A method's entry: its test figures at the top, dev and the choice beside them."""
    if "error" in result:
        return result
    return {**result["test"], "dev": result["dev"], **{k: v for k, v in result.items() if k not in ("test", "dev")}}


def run_quality(args: argparse.Namespace, workdir: Path) -> dict:
    from apps.recommender.encoders import BASE_MODEL, load_encoder

    started = time.monotonic()
    data = load_protocol_a()
    users = data.users[: args.max_users] if args.max_users else None
    rows: dict[str, dict] = {}
    timings: dict[str, float] = {}

    def timed(name: str, work) -> None:
        t0 = time.monotonic()
        rows[name] = _row(work())
        timings[name] = round(time.monotonic() - t0, 1)
        log.info("protocol A %s: %s", name, {k: rows[name].get(k) for k in ("hr10", "ndcg10", "error")})

    for name, result in classic(data, users).items():
        rows[name] = _row({"test": result["test"], "dev": result["dev"]})
    peers = set(args.peers)
    if "implicit" in peers:
        t0 = time.monotonic()
        for name, result in implicit_peers(data, args.seed, users).items():
            rows[name] = _row(result)
        timings["implicit"] = round(time.monotonic() - t0, 1)
    if "lenskit" in peers:
        timed("lenskit_ease", lambda: lenskit_ease(data, users))
    if "sasrec" in peers:
        timed("sasrec", lambda: sasrec(data, args.seed, max_epochs=args.sasrec_epochs, users=users))

    base = CachedEncoder(load_encoder(BASE_MODEL), BASE_MODEL)
    catalog_texts = [_app_text(item) for item in data.catalog_items()]
    timed("text_base", lambda: text_mean(data, base.encode_cached(catalog_texts), users))
    encoders = {"text_base": base}
    details: dict = {}
    folder = args.embedder_artifact
    if folder is None and args.finetune:
        folder, details["finetune"] = finetune(data, catalog_texts, args)
    if folder is not None:
        tuned = tuned_encoder(Path(folder))
        encoders["text_finetuned"] = tuned
        timed("text_finetuned", lambda: text_mean(data, tuned.encode_cached(catalog_texts), users))
    ranker_encoder = encoders.get("text_finetuned", base) if args.ranker_encoder == "finetuned" else base
    timed("ranker", lambda: app_ranker(data, ranker_encoder, workdir, users))

    protocol_a = {**rows, "targets_outside_catalog": data.outside_catalog["test"],
                  "targets_outside_catalog_dev": data.outside_catalog["dev"], "catalog_items": data.n_items,
                  "users": len(users or data.users)}
    b = {}
    for split in ("test", "dev"):
        b[split] = protocol_b(load_protocol_b(split), encoders, args.seed)
    return {"protocol_a": protocol_a, "protocol_b": b,
            "quality_details": {**details, "seconds": round(time.monotonic() - started, 1), "seconds_by_row": timings,
                                "history": "train items for dev and test alike (the dev item is never ranked on "
                                           "test); the catalog is the movies with a train interaction"}}


def _app_text(item: dict) -> str:
    from apps.recommender.items import item_text, parse_items

    return item_text(parse_items([item])[0])


def summary(result: dict) -> dict:
    """The figures a person reads: test and dev HR/NDCG per protocol A row, recall/NDCG per protocol B row."""
    keys = ("hr10", "ndcg10", "cold_hr10", "cold_ndcg10")
    a = {}
    for name, row in result["protocol_a"].items():
        if isinstance(row, dict):
            a[name] = row if "error" in row else {"test": {k: row.get(k) for k in keys},
                                                   "dev": {k: row["dev"].get(k) for k in keys},
                                                   **({"chosen": row["chosen"]} if "chosen" in row else {})}
        else:
            a[name] = row
    b = {split: {name: {k: v for k, v in row.items() if k in ("recall10", "ndcg10")} for name, row in rows.items()}
         for split, rows in result["protocol_b"].items()}
    return {"protocol_a": a, "protocol_b": b}
