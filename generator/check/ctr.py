"""Click-through model: which of two push texts sent in the same A/B group gets clicked more.

Click rates only compare inside one group (one randomised test), so the model never sees an absolute rate. It
is trained on *pairs*: two different texts of one group, label = which had the higher click rate. Each text is
described by its frozen MiniLM (BERT) sentence embedding plus a few standardised hand features (length, question
mark, number, "you", ...); a logistic regression without intercept on the difference of two texts' features
learns one weight vector ``w``, so ``score(text) = w . features(text)`` is a per-text score whose differences
are the log-odds that one text beats the other. Scores compare within a group only.

Protocol (used by both ``train`` and ``eval``):

* packages of a group with identical text (they may differ only by image) are pooled into one *arm*; pairs of
  arms with equal text carry no text signal and do not exist here;
* groups are split into training and held-out parts by a sha256 of the group id (never Python's ``hash()``);
  the regularisation strength is chosen by group K-fold cross-validation inside the training part;
* evaluation is pairwise accuracy on held-out pairs whose rates differ significantly (two-sided
  two-proportion test, p < ``alpha``), for chance, longer-text-wins, TF-IDF (1–2-grams) + logistic regression
  on pair differences, and the BERT model, all on the same pairs in the same run.

A trained model is a folder ``Settings.ctr_dir/<name>`` with ``meta.json`` (base encoder, data hash, metrics,
created_at, config), ``weights.npz`` and ``tfidf_vocab.json`` (the TF-IDF baseline, kept so that ``eval`` on
another file compares against the very baseline trained alongside the model).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from generator.core import model_registry  # by module: tests swap its encoder loader
from generator.core.config import get_settings
from generator.core.data import PastPush, file_sha256, load_table, unit_interval
from generator.core.errors import PushgenError

if TYPE_CHECKING:
    from scipy.sparse import spmatrix

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
SPLIT_SALT = "pushgen-ctr"
HAND_FEATURES = ("chars", "words", "question", "number", "you", "exclamation", "this_here", "upper_share",
                 "quote", "first_person")


class CtrError(PushgenError):
    """A click-through model cannot be trained, loaded or evaluated (too little data, unknown model, ...)."""


class TextEncoder(Protocol):
    """What the model needs from a sentence encoder (a sentence-transformers model satisfies it)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


@dataclass
class CtrConfig:
    """Training and evaluation settings of the click-through model."""

    encoder: str = "minilm"
    """Sentence encoder (registry name, HF id or folder); it stays frozen."""
    holdout_fraction: float = 0.2
    """Share of groups held out for evaluation (0: train on every group, evaluate on another file)."""
    alpha: float = 0.05
    """Evaluation pairs are those whose click rates differ with two-proportion p below this."""
    train_max_p: float = 1.0
    """Training pairs are those with p below this (1.0: every pair whose rates differ)."""
    c_grid: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    """Inverse L2 strengths tried for the BERT model; the best by group cross-validation is kept."""
    tfidf_c_grid: tuple[float, ...] = (0.1, 1.0, 10.0)
    """The same for the TF-IDF baseline."""
    cv_folds: int = 5
    hand_scale: float = 0.1
    """Standardised hand features are multiplied by this so their size is comparable to the unit-norm embedding's
    (each embedding dimension has a standard deviation of about 0.05)."""
    batch_size: int = 64
    device: str | None = None


# ---------------------------------------------------------------------------------------------------- data

def push_text(title: str | None, body: str | None) -> str:
    """The text a push is scored on: ``"{title}\\n{body}"``, or whichever of the two is present."""
    title, body = (title or "").strip(), (body or "").strip()
    return f"{title}\n{body}" if title and body else title or body


@dataclass(frozen=True)
class TextArm:
    """One text of one group, with the sends and clicks of every package that showed it."""

    group_id: str
    text: str
    sends: int
    clicks: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.sends if self.sends else 0.0


@dataclass(frozen=True)
class Pair:
    """Two arms (indices into an arm list) of one group whose click rates differ; ``a`` is the better one."""

    group_id: str
    a: int
    b: int
    p_value: float


def text_arms(pushes: Sequence[PastPush]) -> list[TextArm]:
    """Pool the packages of each group by text (first-seen order); arms without sends are dropped."""
    pooled: dict[tuple[str, str], list[int]] = {}
    for p in pushes:
        s = pooled.setdefault((p.group_id, push_text(p.title, p.body)), [0, 0])
        s[0] += p.sends
        s[1] += p.clicks
    return [TextArm(g, t, n, c) for (g, t), (n, c) in pooled.items() if n > 0]


def two_proportion_pvalue(clicks_a: int, sends_a: int, clicks_b: int, sends_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (scipy's uncorrected chi-square on the 2x2 table,
    which is the same test: chi2 = z^2). 1.0 when there is no variation to test."""
    from scipy.stats import chi2_contingency

    clicks, sends = clicks_a + clicks_b, sends_a + sends_b
    if sends_a == 0 or sends_b == 0 or clicks == 0 or clicks == sends:
        return 1.0
    table = [[clicks_a, sends_a - clicks_a], [clicks_b, sends_b - clicks_b]]
    return float(chi2_contingency(table, correction=False).pvalue)


def within_group_pairs(arms: Sequence[TextArm]) -> list[Pair]:
    """Every pair of different texts in one group whose click rates differ, the higher-rate arm first."""
    by_group: dict[str, list[int]] = {}
    for k, arm in enumerate(arms):
        by_group.setdefault(arm.group_id, []).append(k)
    pairs = []
    for group, idx in by_group.items():
        for x, i in enumerate(idx):
            for j in idx[x + 1:]:
                ai, aj = arms[i], arms[j]
                if ai.clicks * aj.sends == aj.clicks * ai.sends:  # equal rates: no winner
                    continue
                a, b = (i, j) if ai.ctr > aj.ctr else (j, i)
                pairs.append(Pair(group, a, b, two_proportion_pvalue(arms[a].clicks, arms[a].sends,
                                                                     arms[b].clicks, arms[b].sends)))
    return pairs


def group_unit(group_id: str, salt: str = SPLIT_SALT) -> float:
    """A stable number in [0, 1) for a group id, used for the held-out split and the CV folds."""
    return unit_interval(salt, group_id)


def is_held_out(group_id: str, fraction: float) -> bool:
    return group_unit(group_id) < fraction


# ------------------------------------------------------------------------------------------------ features

def hand_features(texts: Sequence[str]) -> np.ndarray:
    """Raw hand features of each text, in the order of :data:`HAND_FEATURES`."""
    rows = []
    for t in texts:
        rows.append([
            len(t) / 100, len(t.split()) / 20, "?" in t, bool(re.search(r"\d", t)),
            bool(re.search(r"\byou(r|rs|'re)?\b", t, re.I)), "!" in t,
            bool(re.search(r"\b(this|these|here)\b", t, re.I)), sum(c.isupper() for c in t) / max(1, len(t)),
            bool(re.search(r"[\"“”']", t)), bool(re.search(r"\b(I|my|me)\b", t)),
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(texts), len(HAND_FEATURES))


def _pair_arrays(pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p.a for p in pairs], dtype=int), np.array([p.b for p in pairs], dtype=int)


def _fit_pairwise(x: np.ndarray | spmatrix, a: np.ndarray, b: np.ndarray, c: float) -> np.ndarray:
    """Logistic regression without intercept on ``x[a] - x[b]`` (label 1) and its mirror (label 0)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    d = x[a] - x[b]
    stacked = sparse.vstack([d, -d]).tocsr() if sparse.issparse(d) else np.vstack([d, -d])
    y = np.r_[np.ones(len(a)), np.zeros(len(a))]
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(stacked, y)
    return model.coef_.ravel()


def pairwise_accuracy(scores: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Share of pairs where the better arm ``a`` scores higher; a tie counts half."""
    if len(a) == 0:
        return float("nan")
    diff = scores[a] - scores[b]
    return float(np.mean(np.where(diff == 0, 0.5, diff > 0)))


def _select_c(x: np.ndarray | spmatrix, pairs: Sequence[Pair], train_mask: np.ndarray, eval_mask: np.ndarray,
              grid: Sequence[float], folds: int) -> tuple[float, dict[str, float]]:
    """Pick C by group K-fold CV: fit on ``train_mask`` pairs of the other folds, score ``eval_mask`` pairs."""
    if len(grid) == 1:
        return grid[0], {}
    a, b = _pair_arrays(pairs)
    fold = np.array([int(group_unit(p.group_id, SPLIT_SALT + ":cv") * folds) for p in pairs])
    usable = [f for f in range(folds) if (eval_mask & (fold == f)).any() and (train_mask & (fold != f)).any()]
    if len(usable) < 2:
        return grid[len(grid) // 2], {}
    cv = {}
    for c in grid:
        accs = []
        for f in usable:
            tr, te = train_mask & (fold != f), eval_mask & (fold == f)
            w = _fit_pairwise(x, a[tr], b[tr], c)
            accs.append(pairwise_accuracy(np.asarray(x @ w).ravel(), a[te], b[te]))
        cv[str(c)] = float(np.mean(accs))
    best = max(grid, key=lambda c: cv[str(c)])
    return best, cv


# ------------------------------------------------------------------------------------------------ baselines

@dataclass
class TfidfBaseline:
    """TF-IDF (word 1–2-grams, sublinear tf) + pairwise logistic regression: the strong bag-of-words baseline."""

    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray

    @staticmethod
    def _vectorizer(vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1 if vocabulary else 2,
                               vocabulary=vocabulary)

    @classmethod
    def fit(cls, texts: Sequence[str], pairs: Sequence[Pair], train_mask: np.ndarray, eval_mask: np.ndarray,
            cfg: CtrConfig) -> tuple[TfidfBaseline, float]:
        a, b = _pair_arrays(pairs)
        used = sorted(set(a[train_mask]) | set(b[train_mask]))
        vec = cls._vectorizer()
        try:
            vec.fit([texts[k] for k in used])
        except ValueError:  # every n-gram appears once: fall back to no frequency cut
            vec = cls._vectorizer()
            vec.min_df = 1
            vec.fit([texts[k] for k in used])
        x = vec.transform(texts)
        c, _ = _select_c(x, pairs, train_mask, eval_mask, cfg.tfidf_c_grid, cfg.cv_folds)
        coef = _fit_pairwise(x, a[train_mask], b[train_mask], c)
        return cls({k: int(v) for k, v in vec.vocabulary_.items()}, np.asarray(vec.idf_), coef), c

    def score(self, texts: Sequence[str]) -> np.ndarray:
        vec = self._vectorizer(self.vocabulary)
        vec.idf_ = self.idf
        return np.asarray(vec.transform(list(texts)) @ self.coef).ravel()


def length_scores(texts: Sequence[str]) -> np.ndarray:
    """The longer-text-wins heuristic as a score: the number of characters."""
    return np.array([len(t) for t in texts], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------- model

@dataclass
class CtrModel:
    """The trained click-through model: frozen encoder + hand features -> one linear score per text."""

    encoder_name: str
    w_embed: np.ndarray
    w_hand: np.ndarray
    hand_mean: np.ndarray
    hand_std: np.ndarray
    hand_scale: float
    tfidf: TfidfBaseline | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    encoder: TextEncoder | None = field(default=None, repr=False)
    device: str | None = None

    def _encoder(self) -> TextEncoder:
        if self.encoder is None:

            self.encoder = model_registry.load_sentence_encoder(self.encoder_name, device=self.device)
        return self.encoder

    def features(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embedding (unit norm) and scaled, standardised hand features of each text, side by side."""
        emb = embed(self._encoder(), texts, batch_size)
        hand = (hand_features(texts) - self.hand_mean) / self.hand_std * self.hand_scale
        return np.hstack([emb, hand])

    def score(self, texts: list[str]) -> list[float]:
        """A within-group comparable score per text (higher = more clicks expected). For a push with title and
        body, pass :func:`push_text` of them. The difference of two scores is the log-odds that the first wins."""
        if not texts:
            return []
        x = self.features(texts)
        return [float(s) for s in x @ np.r_[self.w_embed, self.w_hand]]

    def save(self, name: str = DEFAULT_NAME) -> Path:
        """Write the model to ``Settings.ctr_dir/<name>`` (atomically: a whole folder or none)."""
        target = Path(get_settings().ctr_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        arrays = {"w_embed": self.w_embed, "w_hand": self.w_hand, "hand_mean": self.hand_mean,
                  "hand_std": self.hand_std}
        if self.tfidf is not None:
            arrays |= {"tfidf_idf": self.tfidf.idf, "tfidf_coef": self.tfidf.coef}
            (tmp / "tfidf_vocab.json").write_text(json.dumps(self.tfidf.vocabulary, ensure_ascii=False))
        np.savez(tmp / "weights.npz", **arrays)
        self.meta = {**self.meta, "encoder": self.encoder_name, "hand_features": list(HAND_FEATURES),
                     "hand_scale": self.hand_scale}
        (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, ensure_ascii=False))
        old = target.with_name(f".{name}.old{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return target

    @classmethod
    def load(cls, name: str | None = None, *, encoder: TextEncoder | None = None,
             device: str | None = None) -> CtrModel | None:
        """The model saved as ``name`` (default ``"default"``), or None when none was trained under that name.
        The encoder loads lazily on the first :meth:`score`."""
        folder = Path(get_settings().ctr_dir) / (name or DEFAULT_NAME)
        if not (folder / "meta.json").exists():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            with np.load(folder / "weights.npz") as w:
                arrays = {k: w[k] for k in w.files}
            tfidf = None
            if "tfidf_coef" in arrays:
                vocab = json.loads((folder / "tfidf_vocab.json").read_text())
                tfidf = TfidfBaseline(vocab, arrays["tfidf_idf"], arrays["tfidf_coef"])
            return cls(meta["encoder"], arrays["w_embed"], arrays["w_hand"], arrays["hand_mean"],
                       arrays["hand_std"], float(meta["hand_scale"]), tfidf, meta, encoder, device)
        except (OSError, KeyError, ValueError) as exc:
            raise CtrError(f"cannot load CTR model {folder}: {exc}") from exc


def embed(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings of ``texts`` (float64, one row per text)."""
    unique = list(dict.fromkeys(texts))  # the same text in several groups is embedded once
    out = encoder.encode(unique, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    out = np.asarray(out, dtype=np.float64).reshape(len(unique), -1)
    row = {t: k for k, t in enumerate(unique)}
    return out[[row[t] for t in texts]] if unique else out


# ------------------------------------------------------------------------------------------ train and eval

@dataclass
class CtrEval:
    """Held-out pairwise accuracy of each method on the same significant pairs."""

    pushes: str
    groups: int
    """Evaluated groups with at least one pair."""
    pairs: int
    """Pairs of different texts with different rates in the evaluated groups."""
    significant_pairs: int
    alpha: float
    accuracy: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    scope: str
    """``held-out`` (groups the model did not see) or ``all`` (another file than the training one)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


METHODS = ("chance", "longer-text-wins", "tfidf-lr", "bert")


def _evaluate(arms: Sequence[TextArm], pairs: Sequence[Pair], scores: dict[str, np.ndarray], *, pushes: str,
              alpha: float, scope: str) -> CtrEval:
    from scipy.stats import binomtest

    sig = [p for p in pairs if p.p_value < alpha]
    a, b = _pair_arrays(sig)
    acc: dict[str, float] = {"chance": 0.5}
    ci: dict[str, tuple[float, float]] = {}
    for method, s in scores.items():
        acc[method] = pairwise_accuracy(s, a, b)
    for method, value in acc.items():
        if sig and method != "chance":
            interval = binomtest(round(value * len(sig)), len(sig)).proportion_ci(0.95, method="wilson")
            ci[method] = (float(interval.low), float(interval.high))
    return CtrEval(pushes=pushes, groups=len({p.group_id for p in pairs}), pairs=len(pairs),
                   significant_pairs=len(sig), alpha=alpha, accuracy=acc, ci95=ci, scope=scope)


def _load_arms(path: Path) -> list[TextArm]:
    pushes = load_table(path, PastPush).rows
    if not pushes:
        raise CtrError(f"{path}: no pushes")
    return text_arms(pushes)


def train_ctr(path: str | Path, name: str = DEFAULT_NAME, cfg: CtrConfig | None = None, *,
              encoder: TextEncoder | None = None, report: Callable[[str], Any] = log.info) -> tuple[CtrModel,
                                                                                                      CtrEval | None]:
    """Train the click-through model on the training groups of ``path``, evaluate it on the held-out groups
    (when ``holdout_fraction`` > 0), save it as ``name`` and return ``(model, evaluation or None)``."""
    cfg = cfg or CtrConfig()
    path = Path(path)
    t0 = time.perf_counter()
    arms = _load_arms(path)
    texts = [arm.text for arm in arms]
    pairs = within_group_pairs(arms)
    held = np.array([is_held_out(p.group_id, cfg.holdout_fraction) for p in pairs], dtype=bool)
    pvals = np.array([p.p_value for p in pairs])
    train_mask = ~held & (pvals < cfg.train_max_p)
    if not pairs or train_mask.sum() < 2:
        raise CtrError(f"{path}: {int(train_mask.sum())} training pairs (two different texts with different click "
                       "rates in one group); a CTR model needs more A/B groups")
    report(f"{len(arms)} texts in {len({a.group_id for a in arms})} groups; {len(pairs)} pairs "
           f"({int((pvals < cfg.alpha).sum())} significant at p<{cfg.alpha}); "
           f"training on {int(train_mask.sum())}, held out {int(held.sum())}")

    model = CtrModel(cfg.encoder, np.zeros(0), np.zeros(0), np.zeros(0), np.ones(0), cfg.hand_scale,
                     encoder=encoder, device=cfg.device)
    t1 = time.perf_counter()
    emb = embed(model._encoder(), texts, cfg.batch_size)
    t_embed = time.perf_counter() - t1
    n_unique = len(set(texts))
    report(f"embedded {n_unique} texts with {cfg.encoder} in {t_embed:.1f} s ({n_unique / t_embed:.0f} texts/s)")
    hand = hand_features(texts)
    a, b = _pair_arrays(pairs)
    train_texts = sorted(set(a[train_mask]) | set(b[train_mask]))
    model.hand_mean = hand[train_texts].mean(0)
    model.hand_std = hand[train_texts].std(0) + 1e-9
    x = np.hstack([emb, (hand - model.hand_mean) / model.hand_std * cfg.hand_scale])

    cv_eval_mask = ~held & (pvals < cfg.alpha)
    c, cv = _select_c(x, pairs, train_mask, cv_eval_mask, cfg.c_grid, cfg.cv_folds)
    w = _fit_pairwise(x, a[train_mask], b[train_mask], c)
    model.w_embed, model.w_hand = w[: emb.shape[1]], w[emb.shape[1]:]
    report(f"BERT pairwise model: C={c} (group {cfg.cv_folds}-fold CV accuracy {cv})")
    model.tfidf, tfidf_c = TfidfBaseline.fit(texts, pairs, train_mask, cv_eval_mask, cfg)
    report(f"TF-IDF baseline: C={tfidf_c}")

    evaluation = None
    if held.any():
        scores = {"longer-text-wins": length_scores(texts), "tfidf-lr": model.tfidf.score(texts), "bert": x @ w}
        held_groups = {p.group_id for p in pairs if is_held_out(p.group_id, cfg.holdout_fraction)}
        evaluation = _evaluate([arm for arm in arms if arm.group_id in held_groups],
                               [p for p, h in zip(pairs, held, strict=True) if h], scores, pushes=str(path),
                               alpha=cfg.alpha, scope="held-out")
    seconds = time.perf_counter() - t0
    model.meta = {
        "name": name, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"path": str(path.resolve()), "sha256": file_sha256(path), "texts": len(texts),
                 "groups": len({arm.group_id for arm in arms}), "pairs": len(pairs),
                 "training_pairs": int(train_mask.sum())},
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "split": {"salt": SPLIT_SALT, "holdout_fraction": cfg.holdout_fraction},
        "chosen_c": c, "cv_accuracy": cv, "tfidf_c": tfidf_c, "train_seconds": round(seconds, 1),
        "metrics": evaluation.to_dict() if evaluation else None,
    }
    folder = model.save(name)
    report(f"saved CTR model {name!r} to {folder} ({seconds:.1f} s)")
    return model, evaluation


def evaluate_ctr(path: str | Path, name: str | None = None, *, encoder: TextEncoder | None = None,
                 device: str | None = None) -> CtrEval:
    """Evaluate the saved model ``name`` and its baselines on ``path``: on the held-out groups when ``path`` is
    the file it was trained on, on every group otherwise."""
    path = Path(path)
    model = CtrModel.load(name, encoder=encoder, device=device)
    if model is None:
        raise CtrError(f"no CTR model named {name or DEFAULT_NAME!r} in {get_settings().ctr_dir}; "
                       "train one with: pushgen ctr train --pushes FILE")
    arms = _load_arms(path)
    scope = "all"
    if file_sha256(path) == model.meta.get("data", {}).get("sha256"):
        fraction = float(model.meta["split"]["holdout_fraction"])
        arms = [arm for arm in arms if is_held_out(arm.group_id, fraction)]
        scope = "held-out"
        if not arms:
            raise CtrError(f"{path} is the file model {model.meta.get('name')!r} was trained on, with no groups "
                           "held out; evaluate on another file")
    pairs = within_group_pairs(arms)
    texts = [arm.text for arm in arms]
    scores = {"longer-text-wins": length_scores(texts)}
    if model.tfidf is not None:
        scores["tfidf-lr"] = model.tfidf.score(texts)
    scores["bert"] = np.asarray(model.score(texts)) if texts else np.zeros(0)
    alpha = float(model.meta.get("config", {}).get("alpha", CtrConfig.alpha))
    return _evaluate(arms, pairs, scores, pushes=str(path), alpha=alpha, scope=scope)


def format_accuracy(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
