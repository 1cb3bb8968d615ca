"""A word-level tokenizer built from a corpus, saved and loaded like any Hugging Face tokenizer.

The embedded default encoder speaks the simulator's small language (instructions and object
descriptions), so a lowercase word vocabulary is enough and keeps the text tower tiny.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def words(text: str) -> list[str]:
    """The word split the tokenizer applies (lowercase; punctuation as separate tokens)."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build_word_tokenizer(
    corpus: Iterable[str], extra_special: Sequence[str] = (), min_count: int = 1
) -> PreTrainedTokenizerFast:
    """WordLevel tokenizer over `corpus`: ids 0..3 are [PAD] [UNK] [BOS] [EOS], then `extra_special`
    (e.g. `<image>` for a VLM), then the words in order of first appearance."""
    counts: dict[str, int] = {}
    for line in corpus:
        for w in words(line):
            counts[w] = counts.get(w, 0) + 1
    vocab: dict[str, int] = {}
    for t in (*SPECIAL, *extra_special):
        vocab.setdefault(t, len(vocab))
    for w, c in counts.items():
        if c >= min_count and w not in vocab:
            vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    if extra_special:
        fast.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return fast
