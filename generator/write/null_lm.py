"""A stand-in causal LM whose forward costs (almost) nothing, for measuring the host path of generation.

:class:`NullLM` answers every prompt with the same ``length`` tokens of a real tokenizer's vocabulary (a few
words, a newline, ``Body:``, more words and a second newline), so pushgen's stop rule ends each row after exactly
``length`` new tokens. Everything around the model still runs for real: tokenising, the prefix K/V bookkeeping
(it writes one tiny key/value per token into whatever cache it is given), LoRA adapters per row (its one Linear
layer, ``proj``, is what peft adapts), sampling, stopping, detokenising and parsing.

It is a bigram table: the next token depends only on the last input token (the token after answer token ``k`` is
answer token ``k + 1``; after anything else, the first answer token), so rows may be dropped, repeated and
reordered without any state. Its output layer covers only ``head`` token ids (the answer's, then other ids up
to that count); :attr:`NullLM.output_token_ids` maps a logit column to its vocabulary id. Full-vocabulary logits
(49,152 floats per row and step for SmolLM2) would be device work, which on a GPU belongs to the model's step:
on a CPU it would swamp the host costs this model exists to show (``head=None`` keeps the whole vocabulary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LlamaConfig

from generator.core.model_registry import load_tokenizer

_WORD = re.compile(r"^ [a-z]{3,}$")


def answer_ids(tokenizer: Any, length: int) -> list[int]:
    """``length`` distinct token ids: title words, a newline, ``**Body:**``, body words, a second newline (a
    different newline token than the first, so the bigram table stays unambiguous). None of them is a plain ``:``,
    the last token of pushgen's prompts (``Title:``), after which the answer starts."""
    if length < 7:
        raise ValueError(f"the null model's answer needs at least 7 tokens, not {length}")
    vocab = tokenizer.get_vocab()

    def one(text: str) -> int:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"{text!r} is not one token of this tokenizer")
        return ids[0]

    newline, label, end = one("\n"), [one("**"), one("Body"), one(":**")], one("\n\n")
    words: list[int] = []
    for tok_id in sorted(vocab.values()):
        if len(words) == length - 5:
            break
        if tok_id not in (newline, end, *label) and _WORD.match(tokenizer.decode([tok_id])):
            words.append(tok_id)
    title = min(4, len(words) - 1)
    return words[:title] + [newline, *label] + words[title:] + [end]


@dataclass
class NullOutput:
    logits: torch.Tensor
    past_key_values: Any


class NullLM(torch.nn.Module):
    """See the module docstring. ``length``: new tokens per answer (the second newline is the last);
    ``head``: logit columns (None: the whole vocabulary)."""

    def __init__(self, tokenizer: Any, length: int = 40, head: int | None = 64):
        super().__init__()
        answer = answer_ids(tokenizer, length)
        vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        if head is None:
            columns = torch.arange(vocab_size)
        else:
            if head < length:
                raise ValueError(f"head ({head}) must hold the answer's {length} tokens")
            rest = [i for i in range(vocab_size) if i not in set(answer)][:head - length]
            columns = torch.tensor(answer + rest)
        column_of = torch.full((vocab_size,), -1, dtype=torch.long)
        column_of[columns] = torch.arange(len(columns))
        nxt = torch.full((vocab_size,), int(column_of[answer[0]]), dtype=torch.long)  # after the prompt: token 0
        for a, b in zip(answer, answer[1:], strict=False):
            nxt[a] = column_of[b]
        table = torch.zeros(len(columns), len(columns))
        table[torch.arange(len(columns)), torch.arange(len(columns))] = 20.0  # row c: column c far above the rest
        self.config = LlamaConfig(vocab_size=len(columns), hidden_size=1, intermediate_size=1, num_hidden_layers=1,
                                  num_attention_heads=1, num_key_value_heads=1, head_dim=1,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        self.answer, self.length = answer, length
        self.proj = torch.nn.Linear(1, 1, bias=False)  # what LoRA adapters attach to
        self.register_buffer("output_token_ids", columns, persistent=False)
        self.register_buffer("_next", nxt, persistent=False)
        self.register_buffer("_table", table, persistent=False)

    def forward(self, input_ids: torch.Tensor, past_key_values: Any = None, **_: Any) -> NullOutput:
        """Logits of the last position only, ``[rows, 1, head]``; one zero-sized-ish key/value per token into
        ``past_key_values`` (through the adapters' layer, so per-row adapters run)."""
        b, s = input_ids.shape
        kv = self.proj(torch.zeros(b, s, 1, dtype=self.proj.weight.dtype, device=input_ids.device))
        if past_key_values is not None:
            kv = kv.view(b, 1, s, 1)
            past_key_values.update(kv, kv, 0)
        return NullOutput(logits=self._table.index_select(0, self._next[input_ids[:, -1]])[:, None, :],
                          past_key_values=past_key_values)


def null_lm(tokenizer: Any | None = None, *, length: int = 40, head: int | None = 64) -> tuple[NullLM, Any]:
    """``(model, tokenizer)``: the null model over SmolLM2's tokenizer (default) or ``tokenizer``."""
    if tokenizer is None:

        tokenizer = load_tokenizer("smollm2-135m")
    return NullLM(tokenizer, length, head).eval(), tokenizer
