"""The catalog: items with genres, metadata tokens, release times, latent vectors and a Zipf
popularity prior. Items released after day 0 arrive during the simulation (cold start)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import COUNTRIES, GENRES, LANGUAGES, WorldConfig

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Catalog:
    """Item arrays, indexed by item id ``0..n_items-1``.

    Attributes:
        genres: (n_items, n_genres) bool, one to three genres per item.
        genre_centroids: (n_genres, latent_dim) the latent direction of each genre.
        latent: (n_items, latent_dim) true latent vectors.
        title_tokens: per item, an int array of vocabulary indices (its title words).
        vocab: the title-word vocabulary.
        language: (n_items,) index into ``sim.config.LANGUAGES``'s distinct languages.
        country: (n_items,) index into ``COUNTRIES``.
        release_day: (n_items,) world time at which the item becomes available.
        popularity: (n_items,) Zipf prior, sums to 1.
        runtime_min: (n_items,) running time in minutes.
    """

    genres: np.ndarray
    genre_centroids: np.ndarray
    latent: np.ndarray
    title_tokens: tuple[np.ndarray, ...]
    vocab: tuple[str, ...]
    language: np.ndarray
    country: np.ndarray
    release_day: np.ndarray
    popularity: np.ndarray
    runtime_min: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.genres.shape[0])

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(LANGUAGES))

    def available(self, t: float) -> np.ndarray:
        """Item ids released at or before world time ``t``, ascending."""
        return np.flatnonzero(self.release_day <= t)

    def tokens(self, item: int) -> list[str]:
        """The item's metadata tokens: title words, genres, language and country."""
        words = [self.vocab[j] for j in self.title_tokens[item]]
        genres = [f"genre:{GENRES[g]}" for g in np.flatnonzero(self.genres[item])]
        return [
            *words,
            *genres,
            f"lang:{self.languages[self.language[item]]}",
            f"country:{COUNTRIES[self.country[item]]}",
        ]


def _make_vocab(rng: np.random.Generator, size: int) -> tuple[str, ...]:
    words: dict[str, None] = {}
    while len(words) < size:
        n_syllables = int(rng.integers(2, 4))
        word = "".join(
            _CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(n_syllables)
        )
        words[word] = None
    return tuple(words)


def make_catalog(config: WorldConfig, rng: np.random.Generator) -> Catalog:
    """Draw a catalog. Deterministic for the generator's state."""
    n, n_genres, d = config.n_items, len(GENRES), config.latent_dim

    # Genres: a primary genre from a skewed genre prior, plus up to two more.
    genre_prior = rng.dirichlet(np.full(n_genres, 2.0))
    genres = np.zeros((n, n_genres), dtype=bool)
    n_genres_per_item = rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15])
    for i in range(n):
        picked = rng.choice(n_genres, size=n_genres_per_item[i], replace=False, p=genre_prior)
        genres[i, picked] = True

    genre_centroids = rng.normal(size=(n_genres, d))
    genre_centroids /= np.linalg.norm(genre_centroids, axis=1, keepdims=True)
    latent = genres @ genre_centroids / genres.sum(axis=1, keepdims=True)
    latent = latent + 0.6 * rng.normal(size=(n, d)) / np.sqrt(d)

    # Title words: each genre has its own pool, plus a shared pool.
    vocab = _make_vocab(rng, n_genres * config.vocab_per_genre + config.shared_vocab)
    shared = np.arange(n_genres * config.vocab_per_genre, len(vocab))
    title_tokens = []
    for i in range(n):
        item_genres = np.flatnonzero(genres[i])
        pool = np.concatenate(
            [np.arange(g * config.vocab_per_genre, (g + 1) * config.vocab_per_genre)
             for g in item_genres] + [shared]
        )  # fmt: skip
        n_words = int(rng.integers(2, 5))
        title_tokens.append(np.sort(rng.choice(pool, size=n_words, replace=False)))

    country = rng.choice(len(COUNTRIES), size=n, p=_country_mix())
    language_index = {lang: j for j, lang in enumerate(dict.fromkeys(LANGUAGES))}
    language = np.array([language_index[LANGUAGES[c]] for c in country])

    # Release times: most of the catalog predates day 0; a share arrives during the horizon.
    release_day = -rng.uniform(0.0, 3650.0, size=n)
    arriving = rng.random(n) < config.new_item_share
    release_day[arriving] = rng.uniform(0.0, config.horizon_days, size=int(arriving.sum()))

    rank = rng.permutation(n)
    popularity = 1.0 / (rank + 1.0) ** config.zipf_exponent
    popularity /= popularity.sum()

    is_series = rng.random(n) < 0.4
    runtime_min = np.where(is_series, rng.uniform(22, 60, n), rng.uniform(80, 150, n))

    return Catalog(
        genres=genres,
        genre_centroids=genre_centroids,
        latent=latent,
        title_tokens=tuple(title_tokens),
        vocab=vocab,
        language=language,
        country=country,
        release_day=release_day,
        popularity=popularity,
        runtime_min=runtime_min,
    )


def _country_mix() -> np.ndarray:
    weights = np.array([0.4, 0.1, 0.08, 0.08, 0.08, 0.1, 0.08, 0.08])
    return weights / weights.sum()
