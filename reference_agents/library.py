"""The make-believe web that the research agents read: a search engine over generated pages,
some of them behind a flaky upstream that fails the first fetch and answers the next.

Pages are generated from their URL, so a page reads the same in every process. Which fetches
fail depends on what a `Library` fetched before (it counts its fetches), the way a real
upstream's hiccups do: a retried fetch of a flaky page succeeds.
"""

from __future__ import annotations

import hashlib
import random
import threading

SITES = ("energy-observatory.example", "statistics.example.org", "policy-review.example",
         "news.example.com", "journal.example.edu")
CLAIMS = (
    "Grid storage capacity grew by a third last year",
    "Most new capacity was built in three regions",
    "Costs per kilowatt-hour fell for the fifth year in a row",
    "Permitting delays remain the main bottleneck",
    "Two large projects were cancelled over supply contracts",
    "Households in rural areas see the smallest benefit",
    "Regulators proposed a new reporting rule in the spring",
    "Independent audits found figures overstated by some operators",
    "Insurance costs rose after several incidents",
    "Local opposition slowed a quarter of planned sites",
)


class UpstreamError(Exception):
    """The page's server failed this time (a 503); trying again later may work."""


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - made-up pages


def search(query: str, limit: int = 3) -> list[dict]:
    """`limit` results for a query: URL and title, the same for the same query."""
    rng = _rng("search", query)
    slug = "-".join(query.lower().replace(":", "").split()[:6])
    return [
        {"url": f"https://{rng.choice(SITES)}/{slug}/{n}", "title": f"{query} ({n})"}
        for n in range(1, limit + 1)
    ]


def is_flaky(url: str) -> bool:
    """About one page in four sits behind the flaky upstream."""
    return _rng("flaky", url).random() < 0.25


def page(url: str) -> dict:
    rng = _rng("page", url)
    claims = rng.sample(CLAIMS, k=4)
    return {"url": url, "text": ". ".join(claims) + ".", "words": 120 + rng.randint(0, 900)}


class Library:
    """Fetches pages; a flaky page's first fetch in this process fails with UpstreamError."""

    def __init__(self):
        self._lock = threading.Lock()
        self._fetches: dict[str, int] = {}

    def fetch(self, url: str) -> dict:
        with self._lock:
            count = self._fetches[url] = self._fetches.get(url, 0) + 1
        if is_flaky(url) and count == 1:
            raise UpstreamError(f"503 Service Unavailable from {url.split('/')[2]}")
        return page(url)

