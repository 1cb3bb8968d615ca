"""Encoder fingerprint: one string that changes whenever the tokens an encoder produces could change.

It hashes the weights, config.json and tokenizer files of the checkpoint together with the
preprocessing and token settings (dtype, layer, n_tokens, reduction, text length, projection), so
precomputed embeddings stored under `embeddings/<fingerprint>/` are never reused by another encoder.
The model (folder) name in it is a readable label only: compare fingerprints with `same_encoder`
(equal `fingerprint_identity`), so a renamed copy of a checkpoint still matches what it produced.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
# Past this many bytes of weights, hash each file's size, first and last 8 MiB (plus the safetensors
# header in the first block, which lists every tensor): hashing gigabytes on every load would be slow.
FULL_HASH_LIMIT = 512 * 1024 * 1024
SAMPLE = 8 * 1024 * 1024


def _hash_file(h: Any, path: Path, full: bool) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if full or size <= 2 * SAMPLE:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f.read(SAMPLE))
            f.seek(size - SAMPLE)
            h.update(f.read(SAMPLE))


def checkpoint_digest(directory: Path) -> str:
    """sha256 over the weights, config.json and tokenizer files of a checkpoint directory."""
    h = hashlib.sha256()
    weights = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise FileNotFoundError(f"{directory}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    full = sum(p.stat().st_size for p in weights) <= FULL_HASH_LIMIT
    for p in weights:
        _hash_file(h, p, full)
    for name in ("config.json", "preprocessor_config.json", *TOKENIZER_FILES):
        p = directory / name
        if p.is_file():
            _hash_file(h, p, True)
    return h.hexdigest()


def make_fingerprint(family: str, source: str, digest: str, settings: dict[str, Any]) -> str:
    """`<family>-<model name>-<16 hex>`: readable, safe as a zarr group name, unique per settings."""
    h = hashlib.sha256()
    h.update(digest.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.rstrip("/")).name)[:48] or "model"
    return f"{family}-{name}-{h.hexdigest()[:16]}"


# `<family>-<model name>-<16 hex>`; the model name may itself contain '-'.
_FINGERPRINT = re.compile(r"^(?P<family>[^-]+)-.+-(?P<hash>[0-9a-f]{16})$")


def fingerprint_identity(fp: str) -> str:
    """What identifies the tokens of a fingerprint: `<family>-<16 hex>`, without the model name.

    The model name is the checkpoint folder's name, a label only: the hash already covers the
    weights, config, tokenizer and every token setting, so a copied or renamed folder with the same
    files gives the same identity. A string not in the `make_fingerprint` format is its own identity.
    """
    m = _FINGERPRINT.match(fp)
    return f"{m['family']}-{m['hash']}" if m else fp


def same_encoder(a: Any, b: Any) -> bool:
    """True when fingerprints `a` and `b` describe the same tokens (equal `fingerprint_identity`).

    Use this, never `==`, to compare fingerprints or look up what was stored under one (embedding
    groups, checkpoints): the stored strings keep the model name they were made with.
    """
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        return False
    return a == b or fingerprint_identity(a) == fingerprint_identity(b)
