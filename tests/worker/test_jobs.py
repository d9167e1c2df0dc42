"""worker.jobs: the contexts of an image's noisy copies share the clean image's inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from worker import jobs


def test_an_images_noisy_copies_read_its_inputs_once(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stability analysis runs each image as it is and noisy copies of it: their rows,
    image bytes, decode and baseline were read again for every copy (about 16 ms each)."""
    _, item_ids = hold(
        image_labels="12", grid="2x2", baseline="mean", mode="stability",
        stability={"sigma": 0.1, "draws": 2, "adversarial": False},
    )  # fmt: skip
    assert len(item_ids) == 6  # two images, each as it is and with two draws of noise
    reads: list[str] = []
    store = jobs.blobs()

    class Counting:
        def get(self, key: str) -> Any:
            reads.append(key)
            return store.get(key)

    monkeypatch.setattr(jobs, "blobs", Counting)
    contexts = [jobs.item_context(item_id) for item_id in item_ids]
    assert len(reads) == 2  # one image read per image, none per copy
    by_image: dict[int, list[jobs.ItemContext]] = {}
    for ctx in contexts:
        by_image.setdefault(id(ctx.clean), []).append(ctx)
    assert sorted(len(group) for group in by_image.values()) == [3, 3]
    for group in by_image.values():
        clean, *noisy = sorted(group, key=lambda c: c.variant is not None)
        assert clean.variant is None and np.array_equal(clean.x, clean.clean)
        for ctx in noisy:  # each copy its own noise, on the shared clean image and baseline
            assert (ctx.variant or {}).get("kind") == "noise"
            assert ctx.baseline is clean.baseline
            assert not np.array_equal(ctx.x, clean.clean)
        assert not np.array_equal(noisy[0].x, noisy[1].x)
