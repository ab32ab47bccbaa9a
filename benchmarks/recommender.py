"""``make bench-recommender``: recommendation quality on MovieLens and serving speed at 10k/100k items.

Quality follows ../shared/BENCHMARKS.md, "Recommendation on MovieLens ml-latest-small", protocols
A (next item, leave-last-out, over the leak-free catalog: the movies with a train interaction)
and B (new items, text only), with every peer in the same run: most-popular, item-kNN, recency
item-kNN, ``implicit`` ALS and BPR, LensKit's EASE, RecBole's SASRec, the base text model and the
app's ranker (see :mod:`benchmarks.recommender_quality`). Nothing derived from dev or test
interactions reaches the catalog, a feature, a candidate source or a model: the inputs are built
in :mod:`benchmarks.movielens` and checked by tests/benchmarks/test_movielens_leaks.py. Dev chooses
every setting; test only reports. The peer libraries live in a benchmark-only environment
(``make bench-recommender-env``: var/venv-bench-recommender, pins in
benchmarks/requirements-recommender.txt); run with the project environment, their rows say so.

Speed (synthetic catalogs, the model-free hashing encoder so that the ranking path is what
is timed): single-request latency in process and over HTTP (``serve`` in a subprocess with one
worker and with ``--http-workers``, 8 concurrent keep-alive connections from the lean load
generator in :mod:`benchmarks.http_load`, so that the client takes little of the 2 cores), ANN
recall@10 of the item index against exact search, and whether an upserted item is visible to the
next request.

    make bench-recommender                                  # everything -> var/bench/recommender.json
    python -m benchmarks.recommender --skip-speed --max-users 100 --peers   # a quick check, no peers
    python -m benchmarks.recommender --skip-quality         # speed only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import datasets

log = logging.getLogger("benchmarks.recommender")
BENCH_DIR = datasets.REPO_ROOT / "var" / "bench"
PEERS = ("implicit", "lenskit", "sasrec")
# what the previous, leaking benchmark wrote; a quality run removes it from the figures file
STALE_KEYS = ("quality", "quality_details", "quality_dev_in_history")


# ---------------------------------------------------------------------------------------------- speed


def synthetic_items(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """``n`` items in 200 themes (each theme its own words), and each item's theme."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ru", "te", "zan", "pol", "vek", "dar", "sun", "fi", "gor", "hel", "jun", "bra"]
    vocab = np.array(sorted({"".join(rng.choice(syllables, size=3)) for _ in range(6000)}))
    themes = rng.integers(0, 200, size=n)
    theme_words = np.stack([rng.choice(vocab, size=25, replace=False) for _ in range(200)])  # (200, 25)
    own = theme_words[themes[:, None], rng.integers(0, 25, size=(n, 6))]                       # (n, 6)
    other = vocab[rng.integers(0, len(vocab), size=(n, 4))]                                   # (n, 4)
    items = [{"id": f"s{i}", "title": " ".join(own[i, :3]), "text": " ".join([*own[i, 3:], *other[i]]),
              "category": f"c{themes[i] % 20}"} for i in range(n)]
    return items, themes


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    values = np.array(latencies) * 1000
    return round(float(np.percentile(values, 50)), 2), round(float(np.percentile(values, 99)), 2)


def speed_at(n: int, args: argparse.Namespace, workdir: Path) -> dict:


    from apps.recommender.catalog import Interaction
    from apps.recommender.config import RecommenderConfig
    from apps.recommender.encoders import HashingEncoder
    from apps.recommender.recommender import Recommender

    rng = np.random.default_rng(args.seed)
    items, themes = synthetic_items(n, args.seed)
    store = workdir / f"speed-{n}"
    config = RecommenderConfig(store_dir=store, embedder="hashing:384", snapshot_every=10**9)
    rec = Recommender.load(config, encoder=HashingEncoder(384))
    started = time.monotonic()
    for start in range(0, n, 5000):
        rec.upsert_items(items[start:start + 5000])
    load_seconds = time.monotonic() - started
    by_theme = defaultdict(list)
    for i, theme in enumerate(themes):
        by_theme[int(theme)].append(i)
    histories = []
    for _ in range(2000):  # users who stay mostly within two themes
        pool = by_theme[int(rng.integers(200))] + by_theme[int(rng.integers(200))]
        histories.append([items[i]["id"] for i in rng.choice(pool, size=min(20, len(pool)), replace=False)])
    rec.add_interactions([Interaction(f"u{u}", item, float(t)) for u, h in enumerate(histories)
                          for t, item in enumerate(h)])
    rec.fit_ranker(max_users=300)
    kind = rec.health()["index_kind"]

    requests = [histories[int(rng.integers(len(histories)))] for _ in range(args.speed_requests)]
    for history in requests[:20]:
        rec.recommend(history, k=10)  # warm-up
    latencies = []
    for history in requests:
        t0 = time.perf_counter()
        rec.recommend(history, k=10)
        latencies.append(time.perf_counter() - t0)
    p50, p99 = _percentiles(latencies)

    # ANN recall@10 against exact inner-product search over the same stored vectors
    keys = rec._index.all_keys()
    matrix = rec._index.vectors(keys)
    picks = rng.choice(len(keys), size=200, replace=False)
    queries = matrix[picks] + rng.normal(scale=0.05, size=(200, matrix.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, found = rec._index.search(queries, 10)
    t0 = time.perf_counter()
    exact = keys[np.argsort(-(queries @ matrix.T), axis=1)[:, :10]]
    exact_qps = 200 / (time.perf_counter() - t0)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), exact.tolist(), strict=True)]))

    # an upserted item is visible to the very next request
    upserts, visible = [], True
    for n_new in range(5):
        t0 = time.perf_counter()
        rec.upsert_items([{"id": f"fresh-{n_new}", "title": f"zzqx{n_new} brand new gadget", "text": "zzqx"}])
        upserts.append((time.perf_counter() - t0) * 1000)
        visible &= rec.recommend([], f"zzqx{n_new} brand new gadget", k=1).items[0].id == f"fresh-{n_new}"
    upsert_ms = float(np.median(upserts))
    rec.close()

    # HTTP: the service in its own process(es), 8 concurrent clients; one worker, then one per core
    http = {workers: http_speed(store, requests, args.port + (n % 997) + workers, workers)
            for workers in dict.fromkeys([1, args.http_workers])}
    main_http = http[args.http_workers]
    inproc_rps = len(latencies) / sum(latencies)
    return {"inproc_p50_ms": p50, "inproc_p99_ms": p99, "inproc_rps": round(inproc_rps, 1),
            "http_p50_ms": main_http["p50_ms"], "http_p99_ms": main_http["p99_ms"], "http_rps": main_http["rps"],
            "http_concurrency": 8, "http_workers": args.http_workers, "http_by_workers": http,
            "ann_recall10": round(recall, 4), "index_kind": kind,
            "exact_numpy_search_qps": round(exact_qps, 1), "inproc_rps_over_exact_search_qps":
            round(inproc_rps / exact_qps, 3), "upsert_one_ms_median_of_5": round(upsert_ms, 2),
            "upsert_visible": bool(visible),
            "history_items": 20, "requests": len(latencies), "load_seconds": round(load_seconds, 1),
            "encoder": "hashing:384 (model-free; the ranking path is what is timed)"}


def http_speed(store: Path, requests: list[list[str]], port: int, workers: int) -> dict:
    """p50/p99 latency and requests/s of ``serve --workers workers`` with 8 concurrent clients; and whether an
    item upserted over HTTP is returned by the next requests (whichever worker serves them).

    The server checks an API key on every request, as in production: the benchmark makes one in a keys file
    of its own next to the store, with a rate far above what it sends (the limiter counts, never refuses)."""
    import subprocess
    import sys

    import httpx

    from apps.recommender.keys import KeyStore
    from benchmarks.http_load import run_load

    keys_file = store.parent / f"{store.name}-api_keys.json"
    key = KeyStore(keys_file).create(f"bench-{workers}-{port}", rate_per_minute=10**9)[1]
    headers = {"X-API-Key": key}
    env = {**os.environ, "TEXTML_NUM_THREADS": os.environ.get("TEXTML_NUM_THREADS", "1")}
    server = subprocess.Popen([sys.executable, "-m", "apps.recommender", "--store", str(store), "--embedder",
                               "hashing:384", "--keys-file", str(keys_file), "--log-level", "WARNING", "serve",
                               "--port", str(port), "--workers", str(workers)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        # the load comes from a lean keep-alive client (benchmarks.http_load): httpx would take about as much
        # CPU per request as the handler, from the same 2 cores
        bodies = [{"history": history, "k": 10} for history in requests]
        run_load("127.0.0.1", port, "/recommend", bodies[: 16 * workers], concurrency=8, headers=headers)  # warm-up
        latencies, seconds = run_load("127.0.0.1", port, "/recommend", bodies, concurrency=8, headers=headers)
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            http.post("/items", json={"items": [{"id": f"http-fresh-{workers}", "title": "qqzx gadget",
                                                  "text": "qqzx"}]}).raise_for_status()
            visible = all(http.post("/recommend", json={"history": [], "query": "qqzx gadget", "k": 1}).json()
                          ["items"][0]["id"] == f"http-fresh-{workers}" for _ in range(4 * workers))
            http.request("DELETE", "/items", json={"ids": [f"http-fresh-{workers}"]}).raise_for_status()
    finally:
        server.terminate()
        server.wait(30)
    p50, p99 = _percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "rps": round(len(latencies) / seconds, 1), "upsert_visible": visible}


# ---------------------------------------------------------------------------------------------- main
def machine() -> dict:
    import platform

    import torch

    from core.artifacts import library_versions

    return {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(), "libraries": library_versions()}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.recommender", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-users", type=int, default=None,
                        help="score only the first N users of protocol A (quick checks; figures not comparable)")
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=list(PEERS),
                        help="peer libraries to run (default all; --peers alone runs none)")
    parser.add_argument("--sasrec-epochs", type=int, default=40,
                        help="SASRec's most epochs, scored on dev every 2 and stopped after 3 scores without a gain "
                             "(default 40: with 12, dev NDCG@10 was still rising, 0.0467 -> 0.0518; 30-150 s an epoch "
                             "on one shared core)")
    parser.add_argument("--embedder-artifact", type=Path, default=None,
                        help="a fine-tuned embedder artifact this benchmark saved earlier: adds text_finetuned rows")
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tune the embedder on consecutive train items first (~6 min): adds text_finetuned")
    parser.add_argument("--ranker-encoder", choices=("base", "finetuned"), default="base",
                        help="the encoder behind the app's ranker (finetuned needs --finetune or --embedder-artifact)")
    parser.add_argument("--pairs", type=int, default=4000, help="fine-tuning pairs sampled from train histories")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size (default 64)")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="fine-tuning learning rate")
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    parser.add_argument("--skip-quality", action="store_true", help="speed only")
    parser.add_argument("--speed-sizes", type=int, nargs="+", default=[10_000, 100_000], help="catalog sizes")
    parser.add_argument("--speed-requests", type=int, default=2000,
                        help="timed requests per size (2000: a p99 of 400 was the 4th-worst request and moved 24-31 ms "
                        "between back-to-back runs)")
    parser.add_argument("--port", type=int, default=18300, help="base port of the HTTP speed test")
    parser.add_argument("--http-workers", type=int, default=os.cpu_count() or 1,
                        help="service processes for the reported HTTP figures (default: one per CPU core); "
                             "one worker is always measured too (http_by_workers)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "recommender.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the HTTP clients share the machine with the server: a log line per request would be timed load on it
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    result: dict = {"machine": machine(), "seed": args.seed, "protocol": "../shared/BENCHMARKS.md (MovieLens)"}
    if args.output.is_file():
        previous = json.loads(args.output.read_text(encoding="utf-8"))
        result = {**previous, **result}  # a speed-only or quality-only run keeps the other part
    workdir = Path(tempfile.mkdtemp(prefix="bench-recommender-"))
    summary = {}
    if not args.skip_quality:
        from benchmarks.recommender_quality import run_quality
        from benchmarks.recommender_quality import summary as quality_summary

        for key in STALE_KEYS:
            result.pop(key, None)
        result.update(run_quality(args, workdir))
        summary = quality_summary(result)
    if not args.skip_speed:
        result["speed"] = {str(n): speed_at(n, args, workdir) for n in args.speed_sizes}
        summary["speed"] = result["speed"]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    from core.atomic import atomic_write_text

    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
