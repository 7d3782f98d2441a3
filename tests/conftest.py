"""Shared test set-up: offline, an isolated store and registries per test, one model cache per checkout."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Converted models are cached per checkout, so the suite converts SmolLM2 once and reuses it.
os.environ.setdefault("PUSHGEN_CACHE_DIR", str(REPO / ".cache" / "models"))
PG_ADMIN_URL = os.environ.get("PUSHGEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own SQLite store and adapter/scorer registries (never the user's own)."""
    from generator.core.config import get_settings

    monkeypatch.setenv("PUSHGEN_DATABASE_URL", f"sqlite:///{tmp_path / 'pushgen.db'}")
    monkeypatch.setenv("PUSHGEN_ADAPTERS_DIR", str(tmp_path / "adapters"))
    monkeypatch.setenv("PUSHGEN_SCORERS_DIR", str(tmp_path / "scorers"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    name = f"pushgen_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama model with SmolLM2's tokenizer, saved to a folder (fast unit tests)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from generator.core.model_registry import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT sentence encoder with MiniLM's tokenizer, saved to a folder (a fast scorer for tests of
    the queue, where ranking quality does not matter)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from generator.core.model_registry import resolve_model

    tok = AutoTokenizer.from_pretrained(str(resolve_model("minilm")), local_files_only=True)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=128))
    hf = tmp_path_factory.mktemp("tiny-bert")
    bert.save_pretrained(hf)
    tok.save_pretrained(hf)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    SentenceTransformer(modules=[models.Transformer(str(hf), max_seq_length=128), models.Pooling(32)]).save(str(folder))
    return folder


@pytest.fixture
def long_titles_shop(tmp_path: Path) -> Path:
    """A shop folder whose items are the real-looking long catalog titles of tests/fixtures/long_titles.csv."""
    import shutil

    shop = tmp_path / "long_titles_shop"
    shop.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "long_titles.csv", shop / "items.csv")
    (shop / "users.csv").write_text("user_id,locale\nu1,en_IN\n", encoding="utf-8")
    (shop / "events.csv").write_text("user_id,item_id,event_type,timestamp\n", encoding="utf-8")
    return shop
