"""Simulator image/text pairs: descriptions are true of the rendered frame (and of crops of it)."""

from __future__ import annotations

import random

import numpy as np

from vla.pretrain.sim_pairs import PairConfig, ordered_phrase, render_pairs


def test_descriptions_name_the_scene_objects_left_to_right() -> None:
    pairs = render_pairs(PairConfig(tasks=("pick_cube",), n_scenes=3, image_size=64))
    assert pairs.images["front"].shape == (3, 64, 64, 3) and pairs.images["front"].dtype == np.uint8
    for i in range(3):
        t = pairs.texts["front"][i]
        us = [u for u, _, _ in t["objects"]]
        assert us == sorted(us) and all(-1 <= u <= 1 for u in us)
        # The front camera sees every cube of the scene; the target colour is in the instruction.
        assert len(t["objects"]) == 3
        target = t["instruction"].split()[-2]
        assert any(o == f"{target} cube" for _, _, o in t["objects"])
        assert t["ordered"] == ordered_phrase([o for _, _, o in t["objects"]])
        # The object the instruction names is where the description puts it: its pixels have that colour.
        img = pairs.images["front"][i].astype(int)
        assert img.std() > 5  # a rendered scene, not a blank frame


def test_crop_text_lists_only_objects_inside() -> None:
    pairs = render_pairs(PairConfig(tasks=("pick_cube",), n_scenes=2, image_size=64))
    rng = random.Random(0)
    for _ in range(20):
        crop, text = pairs.sample_crop("front", 0, rng, (0.3, 0.5))
        assert crop.shape[0] == crop.shape[1] and 19 <= crop.shape[0] <= 32
        named = [o for _, _, o in pairs.texts["front"][0]["objects"] if o in text]
        assert named  # the crop is centred near at least one object and says so
        assert "from left to right" in text or text.startswith(("a ", "an "))


def test_ordered_phrase() -> None:
    assert ordered_phrase([]) == "no objects in view"
    assert ordered_phrase(["orange cube"]) == "an orange cube"
    assert ordered_phrase(["red cube", "blue pad"]) == "red cube and blue pad from left to right"


def test_pairs_rendered_in_worker_processes_equal_one_process(monkeypatch) -> None:
    """Each worker renders a contiguous range of scenes (tasks interleaved, so a range starts on any
    task); the joined pairs are the one-process pairs, frame for frame and text for text."""
    import pytest

    import vla.scene_workers

    monkeypatch.setattr(vla.scene_workers, "MIN_SCENES_PER_WORKER", 1)  # spawn workers for 5 scenes
    cfg = PairConfig(tasks=("pick_cube", "push_cube"), n_scenes=5, image_size=48, seed=31)
    one, two = render_pairs(cfg, workers=1), render_pairs(cfg, workers=2)
    assert len(one) == len(two) == 5
    for c in cfg.cameras:
        np.testing.assert_array_equal(one.images[c], two.images[c])
        assert one.texts[c] == two.texts[c]
    with pytest.raises(ValueError, match="workers"):
        render_pairs(cfg, workers=0)
