"""MovieLens ml-latest-small as ../shared/BENCHMARKS.md splits it: protocol A (next item) and B (new items).

Every rating is an implicit interaction; users with at least 5 ratings; per user, sorted by
(timestamp, movieId).

Protocol A (leave-last-out): the last item is test, the one before it dev, the rest train. The
catalog is the movies with at least one *train* interaction, in movies.csv order: a movie that
only dev or test ratings mention is in movies.csv only because of those ratings, so it exists
for no model, feature or candidate source. A target outside the catalog is a miss for every
method (:attr:`ProtocolA.outside_catalog`). Item text is title + genres + the tags users put on
movies in their train interactions.

Protocol B (new items): movies with at least one rating whose ``h(str(movieId))`` is 0 (test)
or 1 (dev) are new; every interaction with a new item leaves training and the histories; text
is title + genres only.

Everything a method may see is built here, from train interactions only, so that
``tests/benchmarks/test_movielens_leaks.py`` can check it in one place.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import datasets

COLD_BELOW = 5  # a target with fewer train interactions is "cold"


def h(text: str) -> int:
    """The split hash of ../shared/BENCHMARKS.md."""
    return int(hashlib.sha1(text.strip().encode("utf-8")).hexdigest(), 16) % 10


def default_folder() -> Path:
    return datasets.datasets_dir() / "movielens_ml_latest_small"


@dataclass(frozen=True)
class Movie:
    id: str
    title: str
    genres: tuple[str, ...]


def read_movies(folder: Path) -> list[Movie]:
    with open(folder / "movies.csv", newline="", encoding="utf-8") as handle:
        return [Movie(row["movieId"], row["title"],
                      () if row["genres"] == "(no genres listed)" else tuple(row["genres"].split("|")))
                for row in csv.DictReader(handle)]


def read_sequences(folder: Path) -> dict[str, list[tuple[float, str]]]:
    """Per user (at least 5 ratings, users in numeric order), ``(timestamp, movieId)`` sorted by both."""
    by_user: dict[str, list[tuple[float, int]]] = defaultdict(list)
    with open(folder / "ratings.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_user[row["userId"]].append((float(row["timestamp"]), int(row["movieId"])))
    return {user: [(ts, str(movie)) for ts, movie in sorted(rows)]
            for user, rows in sorted(by_user.items(), key=lambda kv: int(kv[0])) if len(rows) >= 5}


def protocol_text(movie: Movie, tags: tuple[str, ...] = ()) -> str:
    """``"title. Genres: a, b"`` (+ ``". Tags: x, y"``): the item text of the protocols."""
    text = f"{movie.title}. Genres: {', '.join(movie.genres)}" if movie.genres else movie.title
    return f"{text}. Tags: {', '.join(tags)}" if tags else text


# ---------------------------------------------------------------------------------------------- protocol A
@dataclass(frozen=True)
class UserSplit:
    """One user of protocol A. Items are catalog indices; a held-out item outside the catalog is -1."""

    user: str
    train: np.ndarray        # (t,) int64, oldest first
    train_ts: np.ndarray     # (t,) float64
    dev: int
    test: int

    def target(self, split: str) -> int:
        return self.dev if split == "dev" else self.test

    def excluded(self, split: str) -> np.ndarray:
        """Never candidates: the train history, and the dev item when scoring test."""
        if split == "test" and self.dev >= 0:
            return np.append(self.train, self.dev)
        return self.train


@dataclass(frozen=True)
class ProtocolA:
    movies: list[Movie]                # the catalog: movies with a train interaction, movies.csv order
    tags: list[tuple[str, ...]]        # per catalog movie: tags from train interactions only
    users: list[UserSplit]
    train_counts: np.ndarray           # (n_items,) train interactions per catalog movie
    outside_catalog: dict[str, int]    # "dev"/"test": targets with no train interaction (a miss for all)
    folder: Path

    @property
    def n_items(self) -> int:
        return len(self.movies)

    @property
    def movie_ids(self) -> list[str]:
        return [m.id for m in self.movies]

    def cold(self, item: int) -> bool:
        return item < 0 or self.train_counts[item] < COLD_BELOW

    def texts(self) -> list[str]:
        return [protocol_text(m, t) for m, t in zip(self.movies, self.tags, strict=True)]

    def catalog_items(self) -> list[dict]:
        """The catalog as the app's items: genres and train tags as tags."""
        return [{"id": m.id, "title": m.title, "tags": list(dict.fromkeys([*m.genres, *t]))}
                for m, t in zip(self.movies, self.tags, strict=True)]

    def train_interactions(self) -> list[tuple[str, str, float]]:
        """``(user, movieId, timestamp)`` of every train interaction."""
        return [(s.user, self.movies[i].id, float(ts)) for s in self.users
                for i, ts in zip(s.train.tolist(), s.train_ts.tolist(), strict=True)]

    def train_matrix(self):
        """(users, n_items) CSR of train interactions, rows in ``users`` order: what the matrix peers fit."""
        from scipy.sparse import csr_matrix

        rows = np.concatenate([np.full(len(s.train), u) for u, s in enumerate(self.users)])
        cols = np.concatenate([s.train for s in self.users])
        return csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(self.users), self.n_items))


def load_protocol_a(folder: Path | None = None) -> ProtocolA:
    folder = folder or default_folder()
    movies = read_movies(folder)
    sequences = read_sequences(folder)
    in_train = {movie for rows in sequences.values() for _, movie in rows[:-2]}
    catalog = [m for m in movies if m.id in in_train]
    index = {m.id: i for i, m in enumerate(catalog)}
    counts = np.zeros(len(catalog), np.float32)
    users, train_pairs = [], set()
    outside = {"dev": 0, "test": 0}
    for user, rows in sequences.items():
        train = rows[:-2]
        for _, movie in train:
            counts[index[movie]] += 1
            train_pairs.add((user, movie))
        dev, test = index.get(rows[-2][1], -1), index.get(rows[-1][1], -1)
        outside["dev"] += dev < 0
        outside["test"] += test < 0
        users.append(UserSplit(user, np.array([index[m] for _, m in train], np.int64),
                               np.array([t for t, _ in train], np.float64), dev, test))
    tags: dict[int, list[str]] = defaultdict(list)
    with open(folder / "tags.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row["userId"], row["movieId"]) in train_pairs and row["tag"].strip():
                tags[index[row["movieId"]]].append(row["tag"].strip().lower())
    item_tags = [tuple(dict.fromkeys(tags.get(i, []))) for i in range(len(catalog))]
    return ProtocolA(catalog, item_tags, users, counts, outside, folder)


# ---------------------------------------------------------------------------------------------- protocol B
@dataclass(frozen=True)
class NewItemUser:
    user: str
    history: list[str]      # movieIds of the remaining (not new) interactions, oldest first
    targets: list[str]      # the user's interactions with the split's new items


@dataclass(frozen=True)
class ProtocolB:
    split: str                      # "test" (h = 0) or "dev" (h = 1)
    new_items: list[Movie]          # ranked: the split's new items only
    history_movies: dict[str, Movie]
    users: list[NewItemUser]


def load_protocol_b(split: str, folder: Path | None = None) -> ProtocolB:
    folder = folder or default_folder()
    movies = {m.id: m for m in read_movies(folder)}
    sequences = read_sequences(folder)
    rated = {movie for rows in sequences.values() for _, movie in rows}
    new = {movie for movie in rated if h(movie) in (0, 1)}
    wanted = {"test": 0, "dev": 1}[split]
    ranked = [movies[m] for m in movies if m in new and h(m) == wanted]  # movies.csv order
    users = []
    for user, rows in sequences.items():
        history = [movie for _, movie in rows if movie not in new]
        targets = list(dict.fromkeys(movie for _, movie in rows if movie in new and h(movie) == wanted))
        if len(history) >= 5 and targets:
            users.append(NewItemUser(user, history, targets))
    history_movies = {m: movies[m] for u in users for m in u.history}
    return ProtocolB(split, ranked, history_movies, users)
