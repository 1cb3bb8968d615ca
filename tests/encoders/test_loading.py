"""Offline loading: a hub id that is not cached fails with one clear, actionable error."""

from __future__ import annotations

import json
import os

import pytest

from vla.encoders import EncoderConfig, EncoderLoadError, build_encoder


def test_uncached_hub_id_offline_says_how_to_use_a_local_copy(tmp_path, monkeypatch) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    cfg = EncoderConfig(family="siglip", model="google/siglip-base-patch16-224")
    with pytest.raises(EncoderLoadError) as e:
        build_encoder(cfg)
    msg = str(e.value)
    assert "google/siglip-base-patch16-224" in msg
    assert "HF_HUB_OFFLINE=1" in msg
    assert "encoder.model=" in msg and "local copy" in msg
    assert msg.count("\n") == 0  # one message, not a chain of tracebacks to decode


def test_missing_local_directory(tmp_path) -> None:
    with pytest.raises(EncoderLoadError, match="local directory does not exist"):
        build_encoder(EncoderConfig(family="siglip", model=str(tmp_path / "nope")))


def test_directory_without_config(tmp_path) -> None:
    with pytest.raises(EncoderLoadError, match=r"without config\.json"):
        build_encoder(EncoderConfig(family="siglip", model=str(tmp_path)))


def test_family_mismatch_names_the_file(tiny_dirs) -> None:
    with pytest.raises(
        EncoderLoadError, match=r"config.json: model_type='clip' does not match encoder.family='siglip'"
    ):
        build_encoder(EncoderConfig(family="siglip", model=str(tiny_dirs["clip"])))


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"configs/encoder/x.yaml: unknown encoder field\(s\) \['modle'\]"):
        EncoderConfig.from_dict({"family": "siglip", "modle": "x"}, source="configs/encoder/x.yaml")


def test_hub_cache_layout_loads_offline(tiny_dirs, tmp_path, monkeypatch) -> None:
    """A hub id already in the local cache loads through the same path (no network)."""
    import shutil

    hub = tmp_path / "hf" / "hub"
    snap = hub / "models--acme--tiny-siglip" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_dirs["siglip"], snap)
    (hub / "models--acme--tiny-siglip" / "refs").mkdir()
    (hub / "models--acme--tiny-siglip" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(hub))
    enc = build_encoder(EncoderConfig(family="siglip", model="acme/tiny-siglip", max_text_len=8))
    assert enc.fingerprint.startswith("siglip-tiny-siglip-")
    assert json.loads((snap / "config.json").read_text())["model_type"] == "siglip"
