"""Users: genre tastes, latent factors, a device, a country, a daypart rhythm and an activity
level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.catalog import Catalog
from sim.config import DAYPARTS, DEVICES, GENRES, WorldConfig

_DEVICE_MIX = np.array([0.45, 0.35, 0.12, 0.08])
# Archetypal rhythms over (morning, afternoon, evening, night); each user mixes them.
_RHYTHMS = np.array(
    [
        [0.10, 0.15, 0.60, 0.15],  # evening viewer
        [0.10, 0.50, 0.30, 0.10],  # afternoon (families with children)
        [0.05, 0.10, 0.35, 0.50],  # night owl
        [0.45, 0.20, 0.25, 0.10],  # morning
    ]
)


@dataclass(frozen=True)
class Users:
    """User arrays, indexed by user ``0..n_users-1``.

    Attributes:
        taste: (n_users, n_genres) genre taste, each row a distribution.
        latent: (n_users, latent_dim) latent factors at day 0.
        drift: (n_users, latent_dim) unit direction of taste drift.
        device: (n_users,) index of the primary device in ``DEVICES``.
        country: (n_users,) index in ``COUNTRIES``.
        rhythm: (n_users, n_dayparts) probability of each daypart.
        activity: (n_users,) relative request rate, sums to 1.
    """

    taste: np.ndarray
    latent: np.ndarray
    drift: np.ndarray
    device: np.ndarray
    country: np.ndarray
    rhythm: np.ndarray
    activity: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.taste.shape[0])


def make_users(config: WorldConfig, catalog: Catalog, rng: np.random.Generator) -> Users:
    """Draw the user population. Deterministic for the generator's state."""
    n, d, n_genres = config.n_users, config.latent_dim, len(GENRES)
    taste = rng.dirichlet(np.full(n_genres, 0.3), size=n)
    latent = taste @ catalog.genre_centroids + 0.5 * rng.normal(size=(n, d)) / np.sqrt(d)
    drift = rng.normal(size=(n, d))
    drift /= np.linalg.norm(drift, axis=1, keepdims=True)
    device = rng.choice(len(DEVICES), size=n, p=_DEVICE_MIX)
    country = catalog.country[rng.integers(catalog.n_items, size=n)]
    mix = rng.dirichlet(np.full(len(_RHYTHMS), 0.4), size=n)
    rhythm = mix @ _RHYTHMS
    assert rhythm.shape[1] == len(DAYPARTS)
    activity = rng.lognormal(0.0, 0.8, size=n)
    activity /= activity.sum()
    return Users(
        taste=taste,
        latent=latent,
        drift=drift,
        device=device,
        country=country,
        rhythm=rhythm,
        activity=activity,
    )
