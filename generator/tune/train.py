"""Fine-tune a LoRA brand adapter on past pushes, weighted by how they performed.

Read top to bottom: pushes -> training texts (prompt the production template renders from the push's
context, target = the real copy) -> a group-wise train/valid split -> the loop (length-bucketed batches,
loss on target tokens only, gradient accumulation, early stopping on valid loss, checkpoints) -> the registry.

Target format. The prompt ends with the prefilled ``Title:``; the target is `` <title>\\nBody: <body>`` and
the end-of-turn token, exactly what :func:`generator.write.generate.parse_title_body` reads. A push with only one
text (Upworthy headlines: body only) is a one-line answer `` <text>`` + end-of-turn, on the Title line; the
parser returns it as the title (and an empty body), so a generated candidate carries it in ``title``.

Engagement (``scheme``). ``ctr`` (default): every distinct text is kept and its loss is weighted by its
click-through relative to its group's mean (clipped to [0.25, 4]), so the winners of each A/B test pull
harder while the losers still teach the brand's voice. ``best``: only the top text per group (throws away
most of an A/B archive: 6,803 -> 2,471 texts on the Upworthy half). ``all``: unweighted. Preference pairs
(DPO) need a reference model's forward per pair, doubling the cost, which 2 CPU cores cannot afford.
Measured on held-out Upworthy groups (``adapter eval``, "winner pref.": same-group pairs whose CTRs differ
by >= 10%, share where the model gives the winner the lower per-token NLL): 0.48 for a ``ctr`` adapter
trained on 480 texts vs 0.55 for the zero-shot base over 196 pairs, i.e. no measurable shift toward
winners at that scale (headline CTR differences are small and noisy). ``ctr`` stays the default because it
keeps every text for the voice at no extra cost, while ``best`` drops most of them. Its price in perplexity is
small: one epoch over the 5,283 Upworthy training texts gives 29.45 held-out perplexity with ``ctr`` (and
``ema=0.98``) against 29.26 unweighted (``all``), 0.301x vs 0.2995x the zero-shot base's.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from generator.core.config import get_settings
from generator.core.data import Item, PastPush, file_sha256, find_table, language_of, load_table, unit_interval
from generator.core.errors import DataError
from generator.write.adapters import AdapterInfo, check_name, save_adapter
from generator.write.prompts import PromptLibrary, answer_text, default_library, item_facts, prompt_parts

log = logging.getLogger(__name__)
Scheme = Literal["ctr", "best", "all"]
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FALLBACK_TEMPLATE = "push"  # prompts/push.<lang>.j2: any campaign type, item optional


@dataclass
class LoraTrainConfig:
    """How an adapter is trained. Every field is a ``pushgen adapter train`` option."""

    base: str = "smollm2-135m"
    """Base model: registry name, hub id or folder."""
    brand: str = ""
    """Brand name rendered into the prompts; defaults to the adapter name."""
    locale: str = ""
    """Only pushes of this language (``en``, ``zh``; empty: all): one adapter per brand x locale."""
    scheme: Scheme = "ctr"
    """Engagement scheme: ``ctr`` (loss weighted by in-group relative CTR), ``best`` (top text per group),
    ``all`` (unweighted)."""
    rank: int = 32
    """LoRA rank r (32 with alpha 64 and ema 0.98: the measured-best recipe, docs/quality.md)."""
    alpha: int = 64
    """LoRA alpha (scale = alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input during training. Off by default: on CPU its random masks cost about a third of
    each step, and one or two epochs with early stopping on the valid loss do not overfit."""
    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    """Linear layers that get a LoRA (all attention and MLP projections by default)."""
    lr: float = 1e-3
    """Peak learning rate (linear warm-up, cosine decay to 10%)."""
    warmup: float = 0.05
    """Fraction of optimizer steps spent warming up."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    ema: float = 0.98
    """Decay of an exponential moving average of the LoRA weights per optimizer step (0: off). With it,
    validation, early stopping and the saved adapter use the averaged weights."""
    epochs: int = 1
    """Passes over the training texts."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no cap)."""
    batch_size: int = 16
    """Texts per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_len: int = 256
    """Longest prompt+target in tokens; longer texts lose the start of their prompt."""
    max_texts: int = 0
    """Cap on training texts, taken as whole groups in a seeded order (0: all)."""
    valid_fraction: float = 0.1
    """Share of groups held out as the validation set (a group never straddles the split)."""
    max_valid: int = 96
    """Cap on validation texts (each eval costs a forward pass over them); the held-out groups beyond the cap
    are trained on."""
    eval_every: int = 25
    """Validate every this many optimizer steps (and at the end)."""
    patience: int = 3
    """Stop after this many validations without improvement; the best weights are kept."""
    save_every: int = 25
    """Write a resumable checkpoint every this many optimizer steps."""
    seed: int = 0
    """Seed of the split, the batch order and the LoRA initialisation."""
    quantize: bool = True
    """QLoRA (bitsandbytes 4-bit NF4 base) when CUDA and bitsandbytes are present; plain LoRA otherwise."""
    device: str | None = None
    """``cuda``/``cpu``; None picks CUDA when present."""
    precision: str = "auto"
    """``bf16``, ``fp32`` or ``auto``: bf16 on CUDA and on CPUs with native bf16 (AMX/AVX512-BF16, where it is
    about 4x faster than fp32), fp32 elsewhere. The frozen base is held in that dtype; LoRA weights stay fp32."""


@dataclass(frozen=True)
class TextExample:
    """One training/eval text: the rendered prompt (shared system part + own part) and the real copy."""

    push_id: str
    group_id: str
    locale: str
    shared: str
    own: str
    target: str
    weight: float = 1.0
    ctr: float = 0.0
    user: str = ""  # the template's user message (for few-shot turns)


# -- data ----------------------------------------------------------------------------------------------------
def load_pushes(path: str | Path) -> list[PastPush]:
    """Validated pushes; a bad row is a :class:`DataError` naming file, row and field."""
    rows = load_table(path, PastPush).rows
    if not rows:
        raise DataError(str(path), None, None, "no pushes: the file has a header but no rows")
    return rows


def load_items_near(path: str | Path) -> dict[str, Item]:
    """The items table next to a push file (``items.csv``/``.jsonl``/``.parquet``), if any."""
    found = find_table(Path(path).parent, "items")
    return {i.item_id: i for i in load_table(found, Item).rows} if found else {}


def select_texts(pushes: Sequence[PastPush], scheme: Scheme) -> list[tuple[PastPush, float, float]]:
    """``(push, weight, ctr)`` after de-duplication and the engagement scheme.

    The same text sent several times in a group (Upworthy: one headline with several images) is one text
    whose CTR pools all its sends; a text seen in an earlier group is dropped from later ones.
    """
    by_group: dict[str, dict[str, list[PastPush]]] = defaultdict(dict)
    for p in pushes:
        by_group[p.group_id].setdefault(" ".join(answer_text(p.title, p.body).split()).lower(), []).append(p)
    seen: set[str] = set()
    out = []
    for gid in by_group:
        texts = []
        for key, copies in by_group[gid].items():
            if key in seen:
                continue
            seen.add(key)
            sends, clicks = sum(c.sends for c in copies), sum(c.clicks for c in copies)
            texts.append((copies[0], clicks / sends if sends else 0.0))
        if not texts:
            continue
        if scheme == "best":
            texts = [max(texts, key=lambda t: t[1])]
        mean = sum(c for _, c in texts) / len(texts)
        for push, ctr in texts:
            w = 1.0 if scheme != "ctr" or mean <= 0 else min(4.0, max(0.25, ctr / mean))
            out.append((push, w, ctr))
    return out


def render_prompt(
    push: PastPush, items: dict[str, Item], brand: str, library: PromptLibrary | None = None
) -> Any:
    """What the production template renders from a push's context: its campaign type's template when the
    push's item is known and that template exists, else the generic ``push.<lang>`` template."""
    library = library or default_library()
    item = items.get(push.item_id) if push.item_id else None
    if item is not None:
        lang = language_of(push.locale)
        for name in (f"{push.campaign_type}.{lang}", f"{push.campaign_type}.en"):
            if name in library.names() and set(library.get(name).variables) == {"brand", "item"}:
                return library.render(name, brand=brand, item=item_facts(item, push.locale))
    name = library.resolve(FALLBACK_TEMPLATE, push.locale)
    return library.render(
        name,
        brand=brand,
        campaign_type=push.campaign_type,
        item=item_facts(item, push.locale) if item is not None else None,
    )


def build_examples(
    pushes: Sequence[PastPush],
    tokenizer: Any,
    brand: str,
    *,
    scheme: Scheme = "ctr",
    items: dict[str, Item] | None = None,
) -> list[TextExample]:
    """Pushes -> training texts: zero-shot prompt (no example turns) and the real copy as target."""
    out = []
    library = default_library()
    cache: dict[tuple[str, str, str | None], tuple[Any, str, str]] = {}  # same context -> same prompt
    for push, weight, ctr in select_texts(pushes, scheme):
        key = (push.campaign_type, push.locale, push.item_id)
        if key not in cache:
            rendered = render_prompt(push, items or {}, brand, library)
            cache[key] = (rendered, *prompt_parts(tokenizer, rendered, with_examples=False))
        rendered, shared, own = cache[key]
        out.append(
            TextExample(
                push.push_id,
                push.group_id,
                push.locale,
                shared,
                own,
                answer_text(push.title, push.body),
                weight,
                ctr,
                rendered.user,
            )
        )
    return out


def split_by_group(
    examples: Sequence[TextExample],
    valid_fraction: float,
    seed: int = 0,
) -> tuple[list[TextExample], list[TextExample]]:
    """(train, valid): whole groups go to one side, chosen by a hash of the group id."""
    train: list[TextExample] = []
    valid: list[TextExample] = []
    for e in examples:
        (valid if unit_interval(seed, e.group_id) < valid_fraction else train).append(e)
    return train, valid


def train_valid_split(examples: Sequence[TextExample], cfg: LoraTrainConfig,
                      ) -> tuple[list[TextExample], list[TextExample]]:
    """(train, valid) for training: :func:`split_by_group`, valid capped at ``max_valid`` texts (whole groups),
    the held-out groups beyond the cap trained on rather than left idle, train capped at ``max_texts``."""
    train, valid = split_by_group(examples, cfg.valid_fraction, cfg.seed)
    if not valid and len({e.group_id for e in examples}) > 1:  # tiny files: still validate on one group
        gid = min({e.group_id for e in examples}, key=lambda g: unit_interval(cfg.seed, g))
        train, valid = [e for e in train if e.group_id != gid], [e for e in train if e.group_id == gid]
    capped = cap_by_group(valid, cfg.max_valid, cfg.seed)
    kept = {e.group_id for e in capped}
    train += [e for e in valid if e.group_id not in kept]
    return cap_by_group(train, cfg.max_texts, cfg.seed), capped


def cap_by_group(examples: Sequence[TextExample], limit: int, seed: int = 0) -> list[TextExample]:
    """At most ``limit`` texts, taken as whole groups in a seeded order."""
    if not limit or len(examples) <= limit:
        return list(examples)
    groups: dict[str, list[TextExample]] = defaultdict(list)
    for e in examples:
        groups[e.group_id].append(e)
    out: list[TextExample] = []
    for gid in sorted(groups, key=lambda g: unit_interval(seed + 1, g)):
        if len(out) + len(groups[gid]) > limit:
            continue
        out += groups[gid]
    return out


def choose_fewshot(examples: Sequence[TextExample], k: int = 5) -> list[dict[str, str]]:
    """``k`` real pushes as example turns: the best text of each of the ``k`` groups with the highest CTR."""
    best: dict[str, TextExample] = {}
    for e in examples:
        if e.group_id not in best or e.ctr > best[e.group_id].ctr:
            best[e.group_id] = e
    top = sorted(best.values(), key=lambda e: (-e.ctr, e.push_id))[:k]
    return [{"user": e.user, "answer": "Title:" + e.target} for e in top]


# -- tensors -------------------------------------------------------------------------------------------------
def end_of_turn_id(tokenizer: Any) -> int:
    """The token that ends an assistant turn (``<|im_end|>``, ``<end_of_turn>``, else EOS)."""
    for tok in ("<|im_end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if (
            isinstance(tid, int)
            and tid != tokenizer.unk_token_id
            and tokenizer.convert_ids_to_tokens(tid) == tok
        ):
            return tid
    return tokenizer.eos_token_id


def encode(tokenizer: Any, ex: TextExample, max_len: int) -> tuple[list[int], int]:
    """Token ids of prompt + target + end-of-turn, and how many of them (at the end) are the target."""
    prompt = tokenizer(ex.shared + ex.own, add_special_tokens=False).input_ids
    target = tokenizer(ex.target, add_special_tokens=False).input_ids + [end_of_turn_id(tokenizer)]
    target = target[: max_len - 8]
    prompt = prompt[-(max_len - len(target)) :]
    return prompt + target, len(target)


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length bucketing: indices sorted by length (ties shuffled), cut into batches, batches shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(
    rows: Sequence[tuple[list[int], int]],
    weights: Sequence[float],
    pad_id: int,
    device: Any,
    min_shared: int = 8,
) -> dict[str, Any]:
    """A batch whose rows share their longest common token prefix (the system message, and for copy without
    item facts the whole instruction): that prefix is run once per batch and its keys/values are broadcast to the
    rows; the rest of each row is left-padded, so every target sits at the end and only the last K positions
    need logits. ``prefix_ids`` is None when the rows share fewer than ``min_shared`` tokens."""
    import torch

    shortest_prompt = min(len(ids) - n for ids, n in rows)
    first = rows[0][0]
    shared = 0
    # the position before a row's first target token must stay in the row's own part (it predicts that token)
    while shared < shortest_prompt - 1 and all(ids[shared] == first[shared] for ids, _ in rows):
        shared += 1
    if shared < min_shared:
        shared = 0
    rest = [(ids[shared:], n) for ids, n in rows]
    width = max(len(ids) for ids, _ in rest)
    k = max(n for _, n in rest) + 1  # the position before the first target token predicts it
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    tmask = torch.zeros((len(rows), k - 1), dtype=torch.bool)
    for i, (seq, n) in enumerate(rest):
        ids[i, width - len(seq) :] = torch.tensor(seq)
        mask[i, width - len(seq) :] = 1
        tmask[i, k - 1 - n :] = True
    pos = shared + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), mask], dim=1)
    return {
        "prefix_ids": torch.tensor([first[:shared]], device=device) if shared else None,
        "input_ids": ids.to(device),
        "attention_mask": full_mask.to(device),
        "position_ids": pos.to(device),
        "k": k,
        "target_mask": tmask.to(device),
        "weights": torch.tensor(weights, device=device),
        "tokens": int(mask.sum()) + shared * len(rows),  # tokens of the texts, the shared prefix in every row
    }


def batch_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(weighted mean target NLL, summed unweighted target NLL, target token count) of one batch.

    A shared prefix is run once and its keys/values are broadcast (``expand``: a view, so gradients from every
    row flow back into the one prefix pass)."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    k = batch["k"]
    x = batch["input_ids"]
    width = x.shape[1]
    extra: dict[str, Any] = {}
    if batch.get("prefix_ids") is not None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        pre = model(input_ids=batch["prefix_ids"], use_cache=True, logits_to_keep=1,
                    **{cache_kw: DynamicCache(config=base.config)})
        kv = [(layer.keys.expand(x.shape[0], -1, -1, -1), layer.values.expand(x.shape[0], -1, -1, -1))
              for layer in pre.past_key_values.layers]
        extra = {cache_kw: DynamicCache(ddp_cache_data=kv, config=base.config), "use_cache": True}
    out = model(
        input_ids=x,
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        # indices, not a count: the model then gathers a contiguous slice for its output layer (a count slices a
        # strided view, which on CPU sends the big vocab projection's backward through an expanded copy)
        logits_to_keep=torch.arange(width - k, width, device=x.device),
        **extra,
    )
    logits = out.logits[:, -k:-1].float()
    labels = x[:, -k + 1 :]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    nll = nll.view(labels.shape) * batch["target_mask"]
    w = batch["weights"][:, None] * batch["target_mask"]
    return (nll * w).sum() / w.sum(), nll.sum(), batch["target_mask"].sum()


# -- model ---------------------------------------------------------------------------------------------------
def _load_base(cfg: LoraTrainConfig) -> tuple[Any, Any, bool]:
    """The base model for training: 4-bit NF4 (QLoRA) on CUDA with bitsandbytes, else full precision."""
    import importlib.util

    import torch

    from generator.core.model_registry import (
        _hub_kwargs,
        load_causal_lm,
        load_tokenizer,
        pick_device,
        resolve_model,
        train_dtype,
    )

    dev = pick_device(cfg.device)
    if cfg.quantize and dev.type == "cuda" and importlib.util.find_spec("bitsandbytes"):
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        path = resolve_model(cfg.base)
        bnb = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=bnb, device_map={"": dev.index or 0}, **_hub_kwargs(path)
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        log.warning("QLoRA: base model loaded in 4-bit NF4 on %s", dev)
        return model, load_tokenizer(cfg.base), True
    dtype = train_dtype(dev, cfg.precision)
    if cfg.quantize:
        why = "no CUDA device" if dev.type != "cuda" else "bitsandbytes is not installed"
        log.warning(
            "QLoRA needs CUDA and bitsandbytes (%s): training plain LoRA on a %s base",
            why,
            "bf16" if dtype == torch.bfloat16 else "fp32",
        )
    model, tok = load_causal_lm(cfg.base, device=str(dev), dtype=dtype)
    if dev.type == "cpu" and dtype == torch.bfloat16:
        model.set_attn_implementation("eager")  # CPU SDPA's bf16 backward is slower than eager attention
    return model, tok, False


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


@dataclass
class TrainResult:
    """What a training run produced."""

    info: AdapterInfo
    history: list[dict[str, float]] = field(default_factory=list)


def evaluate_loss(
    model: Any, rows: Sequence[tuple[list[int], int]], pad_id: int, device: Any, batch_size: int
) -> float:
    """Mean target-token NLL (unweighted) of encoded rows."""
    import torch

    total, count = 0.0, 0
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            batch = collate([rows[j] for j in idx], [1.0] * len(idx), pad_id, device)
            _, nll, n = batch_loss(model, batch)
            total, count = total + float(nll), count + int(n)
    return total / max(count, 1)


def train_adapter(
    pushes_path: str | Path,
    name: str,
    cfg: LoraTrainConfig | None = None,
    *,
    items_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> TrainResult:
    """Train a LoRA adapter on a push file and register it as ``name``; returns its registry entry.
    Read top to bottom: data -> base model -> texts -> LoRA, optimizer and schedule -> (resume) -> loop ->
    register."""
    import torch

    cfg = cfg or LoraTrainConfig()
    check_name(name)
    pushes, items = _load_training_pushes(pushes_path, cfg, items_path)
    torch.manual_seed(cfg.seed)
    model, tokenizer, quantized = _load_base(cfg)
    texts = _training_texts(pushes, items, tokenizer, cfg.brand or name, cfg, str(pushes_path), report)
    run = _TrainingRun(cfg, name, file_sha256(pushes_path), model, tokenizer, quantized, texts, report)
    if resume:
        run.resume(str(pushes_path))
    run.loop(progress)
    return run.register(str(pushes_path), cfg.brand or name)


def _load_training_pushes(pushes_path: str | Path, cfg: LoraTrainConfig,
                          items_path: str | Path | None) -> tuple[list[PastPush], dict[str, Item]]:
    """The pushes to learn from (of ``cfg.locale``'s language only, when set) and the items they name."""
    pushes = load_pushes(pushes_path)
    if cfg.locale:
        pushes = [p for p in pushes if language_of(p.locale) == cfg.locale]
        if not pushes:
            raise DataError(str(pushes_path), None, "locale", f"no pushes in language {cfg.locale!r}")
    items = (
        {i.item_id: i for i in load_table(items_path, Item).rows}
        if items_path
        else load_items_near(pushes_path)
    )
    return pushes, items


@dataclass
class _Texts:
    """The training and validation texts, encoded."""

    train: list[TextExample]
    valid: list[TextExample]
    enc_train: list[tuple[list[int], int]]
    enc_valid: list[tuple[list[int], int]]
    weights: list[float]


def _training_texts(pushes: list[PastPush], items: dict[str, Item], tokenizer: Any, brand: str,
                    cfg: LoraTrainConfig, source: str, report: Callable[[str], None]) -> _Texts:
    examples = build_examples(pushes, tokenizer, brand, scheme=cfg.scheme, items=items)
    train, valid = train_valid_split(examples, cfg)
    if not train:
        raise DataError(source, None, None, "no training texts left after de-duplication and the split")
    texts = _Texts(train, valid, [encode(tokenizer, e, cfg.max_len) for e in train],
                   [encode(tokenizer, e, cfg.max_len) for e in valid], [e.weight for e in train])
    report(
        f"{len(pushes)} pushes -> {len(examples)} distinct texts ({cfg.scheme} scheme) -> "
        f"{len(train)} train / {len(valid)} valid texts in {len({e.group_id for e in train})} / "
        f"{len({e.group_id for e in valid})} groups"
    )
    return texts


class _TrainingRun:
    """One adapter's training: the LoRA-wrapped model, optimizer and schedule under Accelerate, the state a
    checkpoint keeps (steps, best valid loss and weights, the moving average), and the steps of the loop."""

    def __init__(self, cfg: LoraTrainConfig, name: str, data_hash: str, model: Any, tokenizer: Any,
                 quantized: bool, texts: _Texts, report: Callable[[str], None]):
        import torch
        from accelerate import Accelerator
        from peft import LoraConfig, get_peft_model

        self.cfg, self.name, self.data_hash, self.texts, self.report = cfg, name, data_hash, texts, report
        self.quantized = quantized
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                          target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        self.mixed = "bf16" if quantized or next(model.parameters()).dtype == torch.bfloat16 else "no"
        self.accelerator = Accelerator(mixed_precision=self.mixed, gradient_accumulation_steps=cfg.grad_accum,
                                       cpu=next(model.parameters()).device.type == "cpu")
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.micro_per_epoch = math.ceil(len(texts.train) / cfg.batch_size)
        total = math.ceil(self.micro_per_epoch * cfg.epochs / cfg.grad_accum)
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(self.total_steps, int(cfg.warmup * self.total_steps)))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.device, self.pad_id = self.accelerator.device, tokenizer.pad_token_id
        self.ckpt_dir = Path(get_settings().adapters_dir) / ".checkpoints" / name
        self.cfg_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
        self.state: dict[str, Any] = {"step": 0, "micro": 0, "best": float("inf"), "best_state": None, "bad": 0,
                                      "seconds": 0.0, "tokens": 0, "history": [], "ema": None}

    def resume(self, source: str) -> None:
        """Continue from this adapter's last checkpoint, when there is one made with the same data and settings."""
        import torch
        from peft import set_peft_model_state_dict

        if not (self.ckpt_dir / "state.pt").exists():
            return
        saved = torch.load(self.ckpt_dir / "state.pt", weights_only=False)
        if saved["data_hash"] != self.data_hash or saved["config"] != self.cfg_dict:
            raise DataError(source, None, None, f"checkpoint in {self.ckpt_dir} was made with other data or "
                            "settings; train without --resume to start over")
        set_peft_model_state_dict(self.accelerator.unwrap_model(self.model), saved["lora"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = saved["state"]
        self.report(f"resumed from {self.ckpt_dir} at step {self.state['step']}/{self.total_steps}")

    def loop(self, progress: bool) -> None:
        """The training loop: length-bucketed batches per epoch, an optimizer step per ``grad_accum``
        micro-batches, validation every ``eval_every`` steps with early stopping, checkpoints."""
        from tqdm import tqdm

        cfg, state, enc_train = self.cfg, self.state, self.texts.enc_train
        self.model.train()
        if state["step"] == 0 and self.texts.enc_valid and not state["history"]:
            self.validate()
        bar = tqdm(total=self.total_steps, initial=state["step"], disable=not progress, unit="step",
                   dynamic_ncols=True)
        stop = state["step"] >= self.total_steps
        epoch = state["micro"] // self.micro_per_epoch
        while not stop and epoch < cfg.epochs:
            batches = length_batches([len(ids) for ids, _ in enc_train], cfg.batch_size,
                                     random.Random(cfg.seed + epoch))
            for bi, idx in enumerate(batches):
                if epoch * self.micro_per_epoch + bi < state["micro"]:
                    continue  # done before the checkpoint we resumed from
                loss = self.micro_step(idx)
                if not self.accelerator.sync_gradients:
                    continue
                state["step"] += 1
                self.update_ema()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{state['tokens'] / state['seconds']:.0f}")
                if self.after_step():
                    stop = True
                    break
            epoch += 1
        bar.close()
        if self.texts.enc_valid and (not state["history"] or state["history"][-1]["step"] != state["step"]):
            self.validate()

    def micro_step(self, idx: Sequence[int]) -> float:
        """Forward and backward one micro-batch (and the optimizer step when gradients sync); its loss."""
        t0 = time.perf_counter()
        batch = collate([self.texts.enc_train[i] for i in idx], [self.texts.weights[i] for i in idx], self.pad_id,
                        self.device)
        with self.accelerator.accumulate(self.model), self.accelerator.autocast():
            loss, _, _ = batch_loss(self.model, batch)
            self.accelerator.backward(loss)
            if self.accelerator.sync_gradients:
                self.accelerator.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.state["micro"] += 1
        self.state["seconds"] += time.perf_counter() - t0
        self.state["tokens"] += batch["tokens"]
        return loss.item()

    def after_step(self) -> bool:
        """Validate and checkpoint when due; True when training is over (last step or early stop)."""
        cfg, state = self.cfg, self.state
        done = state["step"] >= self.total_steps
        if self.texts.enc_valid and (state["step"] % cfg.eval_every == 0 or done) and self.validate():
            self.report(f"early stop: no valid improvement in {cfg.patience} evaluations")
            done = True
        if done or state["step"] % cfg.save_every == 0:
            self.checkpoint()
        return done

    def checkpoint(self) -> None:
        import torch
        from peft import get_peft_model_state_dict

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_dir / "state.pt.tmp"
        torch.save({"data_hash": self.data_hash, "config": self.cfg_dict, "state": self.state,
                    "lora": get_peft_model_state_dict(self.accelerator.unwrap_model(self.model)),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}, tmp)
        tmp.replace(self.ckpt_dir / "state.pt")

    def update_ema(self) -> None:
        state = self.state
        if not self.cfg.ema:
            return
        if state["ema"] is None:
            state["ema"] = [p.detach().float().cpu().clone() for p in self.params]
            return
        d = min(self.cfg.ema, (1 + state["step"]) / (10 + state["step"]))  # short memory while it warms up
        for avg, p in zip(state["ema"], self.params, strict=True):
            avg.mul_(d).add_(p.detach().float().cpu(), alpha=1 - d)

    def swap_ema(self) -> None:
        """Exchange the live LoRA weights with the averaged ones (twice restores them)."""
        import torch

        if self.cfg.ema and self.state["ema"] is not None:
            with torch.no_grad():
                for avg, p in zip(self.state["ema"], self.params, strict=True):
                    live = p.detach().float().cpu().clone()
                    p.copy_(avg.to(p.device, p.dtype))
                    avg.copy_(live)

    def validate(self) -> bool:
        """Record valid loss (of the averaged weights with ``ema``); True when training should stop early."""
        from peft import get_peft_model_state_dict

        state, enc_valid = self.state, self.texts.enc_valid
        self.model.eval()
        self.swap_ema()
        loss = evaluate_loss(self.model, enc_valid, self.pad_id, self.device, self.cfg.batch_size) \
            if enc_valid else float("nan")
        improved = not enc_valid or loss < state["best"] - 1e-4
        if improved:
            state["best"], state["bad"] = loss, 0
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in
                                   get_peft_model_state_dict(self.accelerator.unwrap_model(self.model)).items()}
        self.swap_ema()
        self.model.train()
        state["history"].append({"step": state["step"], "valid_loss": loss})
        if not improved:
            state["bad"] += 1
        self.report(
            f"step {state['step']}/{self.total_steps} | valid loss {loss:.4f} (ppl {math.exp(loss):.1f}) | "
            f"best {state['best']:.4f} | {state['tokens'] / max(state['seconds'], 1e-9):.0f} tok/s"
        )
        return state["bad"] >= self.cfg.patience

    def register(self, source: str, brand: str) -> TrainResult:
        """Save the best weights (by valid loss) to the registry with their metadata; drop the checkpoint."""
        from peft import set_peft_model_state_dict

        state, cfg = self.state, self.cfg
        peft_model = self.accelerator.unwrap_model(self.model)
        if state["best_state"] is not None:
            set_peft_model_state_dict(peft_model, state["best_state"])
        info = AdapterInfo(name=self.name, base=cfg.base, brand=brand, data_file=source, data_hash=self.data_hash,
                           scheme=cfg.scheme, hyperparameters=self.cfg_dict, metrics=self.metrics(),
                           fewshot=choose_fewshot(self.texts.train),
                           created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        save_adapter(peft_model, info)
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)  # finished: the checkpoint was only for resuming
        self.report(
            f"saved adapter {self.name!r}: {state['step']} steps in {state['seconds']:.0f} s, "
            f"{info.metrics['tokens_per_s']:.0f} tokens/s, valid ppl {info.metrics['valid_ppl']}"
        )
        return TrainResult(info=info, history=state["history"])

    def metrics(self) -> dict[str, Any]:
        state, seconds, valid = self.state, self.state["seconds"], bool(self.texts.enc_valid)
        return {
            "train_texts": len(self.texts.train),
            "valid_texts": len(self.texts.valid),
            "steps": state["step"],
            "train_seconds": round(seconds, 1),
            "train_tokens": state["tokens"],
            "tokens_per_s": round(state["tokens"] / max(seconds, 1e-9), 1),
            "valid_loss": round(state["best"], 4) if valid else None,
            "valid_ppl": round(math.exp(state["best"]), 2) if valid else None,
            "valid_loss_at_start": round(state["history"][0]["valid_loss"], 4) if state["history"] else None,
            "qlora": self.quantized,
            "precision": self.mixed if self.mixed != "no" else "fp32",
            "device": str(self.device),
        }
