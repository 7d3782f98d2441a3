"""The scorer with the real packaged MiniLM: loading falls back to zero-shot, and rankings make sense."""

from __future__ import annotations

import pytest

from generator.core.config import get_settings
from generator.rank.scorer import RankRules, Scorer
from tests.test_scorer import make_shop

pytestmark = pytest.mark.slow


@pytest.fixture()
def empty_scorers_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHGEN_SCORERS_DIR", str(tmp_path / "scorers"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield tmp_path / "scorers"
    get_settings.cache_clear()


def test_load_without_trained_scorer_is_zero_shot_minilm(empty_scorers_dir) -> None:
    scorer = Scorer.load(device="cpu")
    assert scorer.collab is None and scorer.meta["kind"] == "zero-shot" and scorer.encoder_key == "minilm"
    out = scorer.rank(make_shop(), rules=RankRules(k=2, mmr_lambda=None), progress=False)
    assert out["u_coffee"][0].item.item_id.startswith("b")
    assert out["u_camp"][0].item.item_id.startswith("a")
    assert len(out["u_new"]) == 2
