"""The embedded pair: shipped weights, function-preserving growth, the first-use cache."""

from __future__ import annotations

import json

import pytest

from specwise.engine import pair

SHIPPED = pair.SHIPPED


def test_shipped_weights_are_small_and_share_one_tokenizer():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30e6
    assert (SHIPPED / "target-small" / "tokenizer.json").read_bytes() == (SHIPPED / "draft" / "tokenizer.json").read_bytes()
    recipe = json.loads((SHIPPED / "recipe.json").read_text())
    assert recipe["seed"] == pair.SEED and recipe["params"]["draft"] < recipe["params"]["target_small"]


def test_cache_key_follows_the_shipped_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w").write_bytes(b"1")
    first = pair.recipe_key(tmp_path)
    (tmp_path / "a" / "w").write_bytes(b"2")
    assert pair.recipe_key(tmp_path) != first


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECWISE_CACHE_DIR", str(tmp_path / "c"))
    assert pair.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPECWISE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert pair.cache_dir() == tmp_path / "x" / "specwise"


def test_first_use_grows_an_80m_target_with_the_small_ones_function():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    built = pair.ensure_pair(log=lambda msg: None)
    info = json.loads((built.target.parent / "build.json").read_text())
    assert info["grow_max_logit_diff"] <= pair.GROW_MAX_LOGIT_DIFF
    assert 70e6 < info["params"]["target"] < 90e6
    config = json.loads((built.target / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (pair.BIG["hidden_size"], pair.BIG["num_hidden_layers"])
    assert (built.draft / "model.safetensors").exists() and (built.target / "tokenizer.json").exists()
    assert pair.ensure_pair(log=lambda msg: pytest.fail("rebuilt a cached pair")) == built
