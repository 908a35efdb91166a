"""How a run of the command line uses Python's cycle collector.

A cold run makes millions of objects that live until their file is done (a libcst
tree is a few thousand nodes per file) and keeps the project index alive
throughout. With the default thresholds the collector runs every 700 new
objects, and every so often walks everything alive, the index included: on the
large trees of ``bench/large_bench.py`` that was about a fifth of the run
(docs/architecture.md, "Large trees"). Trees hold no cycles (a libcst node has no
parent link), so they are freed by reference counting whatever the collector
does; collecting less often frees the same cycles later.

- :func:`batch_collection`: for one run, collect less often, then put things back
  (tests call ``main()`` many times in one process).
- :func:`settle`: once the index is built, take what is alive out of the
  collector's walks (``gc.freeze``): the index lives until the end of the run,
  and the forked workers then do not touch its pages either.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Objects made (net) between collections of the youngest generation, and how
# many of those before the older ones: 20,000 keeps a file's tree out of the
# older generations, where each collection would walk it again.
_THRESHOLDS = (20_000, 50, 100)


@contextmanager
def batch_collection() -> Iterator[None]:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.set_threshold(*_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen:  # what settle() froze is collectable again
            gc.unfreeze()


def settle() -> None:
    gc.freeze()
