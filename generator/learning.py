"""The learning loop: outcomes and reviewers' decisions go back into the click-through model and the next adapter.

One pass (:func:`run_loop`, ``pushgen loop``, the periodic Celery task ``workers.tasks_experiments.learning_loop``):

1. **Gather** every push that was sent in an experiment with what happened to it (opened, clicked, converted,
   revenue) as past-push rows (``outcomes.csv``): ``sends`` = 1 and ``clicks`` = 0/1 per push. A push's copy is
   personalised, so there is no "same text sent to many" as in a headline test; the randomised unit is the
   user, and pushes are grouped into blocks of about ``block`` users of one experiment (by a hash of the user
   id) so the click-through model's pairs (clicked vs not clicked copy of one block) stay inside one randomised
   experiment and their number stays linear in the sends.
2. **Winners**: the sent copy of each experiment's winning arm (the arm recorded by ``experiment stop --winner``,
   else the arm the winner rule of :func:`generator.experiments.report.pick_winner` names now), and the chosen
   copy of the reviewers' preference pairs (:func:`preference_pairs`: approved edits over the
   model's original, approved over rejected copy) form the adapter's training file (``adapter_train.jsonl``).
   Clicked winners weigh more through the trainer's ``ctr`` scheme.
3. **Refresh** the click-through model on ``base_pushes`` (the brand's past pushes, optional) plus the outcomes,
   and **train** the next adapter version ``<base>-v<N+1>`` from the winners (a LoRA on the generator).
4. **Record** a :class:`generator.experiments.ab.LoopRun` with what it used and produced. Which adapter version
   wrote which sends is on every send (``sends.adapter``, copied from the message at send time); the run
   records the counts per adapter too.

A step without enough data is skipped with its reason (recorded), not an error.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from generator.campaign.spec import Campaign
from generator.check.ctr import CtrConfig, CtrError, train_ctr
from generator.core.config import get_settings
from generator.core.data import PastPush, find_table, load_table, write_table
from generator.core.errors import PushgenError
from generator.db import tables
from generator.db.jobs import get_job
from generator.db.store import Store
from generator.db.tables import Job, Message, ReviewEvent, utcnow
from generator.experiments import ab as ex
from generator.experiments.report import pick_winner
from generator.review import campaign_of
from generator.tune.train import LoraTrainConfig, train_adapter
from generator.write.adapters import list_adapters
from generator.write.prompts import answer_text

log = logging.getLogger(__name__)
PUSH_COLUMNS = ("push_id", "group_id", "campaign_type", "title", "body", "locale", "item_id", "sends", "opens",
                "clicks", "conversions", "sent_at", "experiment_id", "arm", "adapter", "revenue")


@dataclass
class LoopConfig:
    """What one pass of the loop trains, and on what."""

    out_dir: Path = Path("out/loop")
    """Where the gathered files are written."""
    base_pushes: Path | None = None
    """The brand's past pushes, added to the outcomes for the click-through model (optional)."""
    items: Path | None = None
    """Items table for the adapter's prompts (default: the shop of the experiments' job)."""
    adapter_base: str = "loop"
    """Adapter versions are named ``<adapter_base>-v1``, ``-v2``, ..."""
    ctr_name: str = "default"
    """Registry name of the refreshed click-through model (``default`` is used by generation)."""
    block: int = 20
    """Users per click-through comparison block."""
    train_ctr: bool = True
    train_adapter: bool = True
    ctr_config: Any = None
    """A :class:`generator.check.ctr.CtrConfig` (default: every group used for training)."""
    adapter_config: Any = None
    """A :class:`generator.tune.train.LoraTrainConfig` (default: the trainer's defaults)."""
    encoder: Any = None
    """A sentence encoder for the click-through model (default: the configured one)."""
    report: Callable[[str], Any] = field(default=log.info)


def gather_outcomes(store: Store, block: int = 20) -> list[dict[str, Any]]:
    """Every sent push with its outcomes, as past-push rows (see the module doc)."""
    rows: list[dict[str, Any]] = []
    with store.session() as s:
        exps = list(s.scalars(select(tables.Experiment)))
        for exp in exps:
            sent = list(s.scalars(select(tables.Send).where(tables.Send.experiment_id == exp.id,
                                                            tables.Send.status == "sent")))
            if not sent:
                continue
            events: dict[int, Counter[str]] = {}
            revenue: dict[int, float] = {}
            for e in s.scalars(select(tables.OutcomeEvent).where(tables.OutcomeEvent.experiment_id == exp.id)):
                events.setdefault(e.send_id, Counter())[e.type] += 1
                revenue[e.send_id] = revenue.get(e.send_id, 0.0) + (e.revenue or 0.0)
            job = s.get(Job, exp.job_id) if exp.job_id else None
            locale = ((job.params or {}).get("campaign", {}).get("locale") if job else None) or "en_US"
            blocks = max(1, round(len(sent) / block))
            msgs = {m.id: m for m in s.scalars(select(Message).where(Message.id.in_(
                [x.message_id for x in sent if x.message_id])))}
            for x in sent:
                m = msgs.get(x.message_id)
                if m is None or not (m.title or m.body):
                    continue  # erased copy
                got = events.get(x.id, Counter())
                lang = (m.template or "").rsplit(".", 1)[-1]
                rows.append({
                    "push_id": f"send-{x.id}", "campaign_type": job.campaign_type if job else "generic",
                    "group_id": f"{exp.id}:{int(ex.unit_interval(exp.id, x.user_id) * blocks)}",
                    "title": m.title, "body": m.body,
                    "locale": "zh_CN" if lang == "zh" and not locale.startswith("zh") else locale,
                    "item_id": (m.item_ids or [None])[0], "sends": 1, "opens": int(got["opened"] > 0),
                    "clicks": int(got["clicked"] > 0), "conversions": int(got["converted"] > 0),
                    "sent_at": (x.sent_at or x.updated_at).isoformat(), "experiment_id": exp.id, "arm": x.arm,
                    "adapter": x.adapter, "revenue": round(revenue.get(x.id, 0.0), 2)})
    return rows


def winners(store: Store) -> dict[str, str]:
    """{experiment id: winning arm}: the recorded winner, else what the winner rule says now."""
    out: dict[str, str] = {}
    for exp in ex.list_experiments(store):
        if exp.winner:
            out[exp.id] = exp.winner
            continue
        counts = ex.arm_counts(store, exp.id)
        if sum(c["assigned"] for c in counts.values()) == 0:
            continue
        decision = pick_winner(counts, tuning=float(max(sum(c["assigned"] for c in counts.values()), 1000)))
        if decision["winner"]:
            out[exp.id] = decision["winner"]
    return out


def next_adapter_name(base: str) -> str:
    """``<base>-v<N+1>`` for the highest version N in the registry (v1 when there is none)."""
    pattern = re.compile(rf"^{re.escape(base)}-v(\d+)$")
    versions = [int(m.group(1)) for a in list_adapters() if (m := pattern.match(a.name))]
    return f"{base}-v{max(versions, default=0) + 1}"


def run_loop(store: Store, cfg: LoopConfig | None = None) -> tables.LoopRun:
    """One pass of the loop; returns its record."""
    cfg = cfg or LoopConfig()
    report = cfg.report
    with store.session() as s:
        run = tables.LoopRun(status="running", counts={})
        s.add(run)
    counts: dict[str, Any] = {}
    try:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        outcomes = gather_outcomes(store, cfg.block)
        counts["sends"] = len(outcomes)
        counts["clicks"] = sum(r["clicks"] for r in outcomes)
        counts["sends_by_adapter"] = dict(Counter(r["adapter"] or "base model" for r in outcomes))
        if outcomes:
            write_table(out / "outcomes.csv", outcomes, columns=PUSH_COLUMNS)
        report(f"gathered {len(outcomes)} sent pushes ({counts['clicks']} clicked) from experiments")

        won = winners(store)
        # the winning arm's copy, in the same blocks of users (so the trainer can hold some out for validation)
        winner_rows = [dict(r) for r in outcomes if won.get(r["experiment_id"]) == r["arm"]]
        pairs, unpaired = preference_pairs(store)
        counts.update({"experiments_with_winner": len(won), "winner_pushes": len(winner_rows),
                       "preference_pairs": len(pairs), "unpaired_rejections": unpaired})
        report(f"{len(won)} experiments with a winner ({len(winner_rows)} pushes); {len(pairs)} preference pairs")

        if cfg.train_ctr:
            run.ctr_model = _refresh_ctr(out, outcomes, cfg, counts)
        if cfg.train_adapter:
            run.adapter = _train_next_adapter(store, out, winner_rows, pairs, cfg, counts)
        status = "done"
    except Exception as exc:
        status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("learning loop failed")
    with store.session() as s:
        row = s.get(tables.LoopRun, run.id)
        row.status, row.counts, row.finished_at = status, counts, utcnow()
        row.adapter, row.ctr_model, row.error = run.adapter, run.ctr_model, run.error
    with store.session() as s:
        return s.get(tables.LoopRun, run.id)


def _refresh_ctr(out: Path, outcomes: list[dict[str, Any]], cfg: LoopConfig, counts: dict[str, Any]) -> str | None:
    rows = list(outcomes)
    if cfg.base_pushes is not None:
        rows += [p.model_dump(mode="json") for p in load_table(cfg.base_pushes, PastPush).rows]
    if not rows:
        counts["ctr"] = "skipped: no pushes with outcomes"
        return None
    path = out / "ctr_train.csv"
    write_table(path, [{k: r.get(k) for k in PUSH_COLUMNS[:12]} for r in rows], columns=PUSH_COLUMNS[:12])
    try:
        _, _ = train_ctr(path, cfg.ctr_name, cfg.ctr_config or CtrConfig(holdout_fraction=0.0),
                         encoder=cfg.encoder, report=cfg.report)
    except CtrError as exc:
        counts["ctr"] = f"skipped: {exc}"
        cfg.report(counts["ctr"])
        return None
    counts["ctr"] = f"trained on {len(rows)} pushes"
    return cfg.ctr_name


def _train_next_adapter(store: Store, out: Path, winner_rows: list[dict[str, Any]], pairs: list[dict[str, Any]],
                        cfg: LoopConfig, counts: dict[str, Any]) -> str | None:
    rows = [{k: r.get(k) for k in PUSH_COLUMNS[:12]} for r in winner_rows]
    rows += [{k: p.get(k) for k in PUSH_COLUMNS[:12]} for p in pairs]
    if not rows:
        counts["adapter"] = "skipped: no winning copy and no preference pairs yet"
        cfg.report(counts["adapter"])
        return None
    path = out / "adapter_train.jsonl"
    write_table(path, rows, columns=PUSH_COLUMNS[:12])
    name = next_adapter_name(cfg.adapter_base)
    items = cfg.items or _items_file(store)
    try:
        result = train_adapter(path, name, cfg.adapter_config or LoraTrainConfig(), items_path=items,
                               progress=False, report=cfg.report)
    except PushgenError as exc:
        counts["adapter"] = f"skipped: {exc}"
        cfg.report(counts["adapter"])
        return None
    counts["adapter"] = f"{name} trained on {len(rows)} texts"
    counts["adapter_metrics"] = {k: v for k, v in (result.info.metrics or {}).items()
                                 if isinstance(v, int | float | str)}
    return name


def _items_file(store: Store) -> Path | None:
    folder = None
    for exp in ex.list_experiments(store):
        job = get_job(store, exp.job_id) if exp.job_id else None
        if job and (job.params or {}).get("shop"):
            folder = Path(job.params["shop"])
            break
    return find_table(folder or get_settings().shop_dir, "items")


def loop_runs(store: Store) -> list[tables.LoopRun]:
    with store.session() as s:
        return list(s.scalars(select(tables.LoopRun).order_by(tables.LoopRun.id.desc())))


PAIR_COLUMNS = ("prompt", "chosen", "rejected", "kind", "reason", "job_id", "message_id", "rejected_message_id",
                "template", "adapter", "reviewer", "decided_at", "push_id", "group_id", "campaign_type", "title",
                "body", "locale", "item_id", "sends", "clicks", "sent_at")


def preference_pairs(store: Store, job_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Preference pairs from reviewers' decisions, and how many rejections had no approved copy to pair with.

    - ``edit``: a message a reviewer edited and then approved: chosen = the approved edit, rejected = the model's
      original copy (the first edit's old text).
    - ``reject``: a rejected message, paired with approved copy for the same prompt (another A/B variant of the
      same user, or another user with the identical prompt) in the same job: chosen = approved, rejected = it.

    Each pair also carries the past-push fields (``push_id``, ``group_id``, ``campaign_type``, ``title``/``body``
    = the chosen copy, ``locale``, ``item_id``, ``sends``/``clicks`` = 0, ``sent_at`` = when it was approved),
    so the same file is a valid ``--pushes`` file for ``pushgen adapter train`` (supervised on the chosen copy),
    while ``prompt``/``chosen``/``rejected`` is the usual DPO layout.
    """
    with store.session() as s:
        q = select(Message).where(Message.review_status.in_(("approved", "rejected")))
        if job_id:
            q = q.where(Message.job_id == job_id)
        messages = list(s.scalars(q.order_by(Message.job_id, Message.user_id, Message.variant)))
        ids = [m.id for m in messages]
        events: dict[int, list[ReviewEvent]] = {i: [] for i in ids}
        for i in range(0, len(ids), 500):
            for e in s.scalars(select(ReviewEvent).where(ReviewEvent.message_id.in_(ids[i:i + 500]))
                               .order_by(ReviewEvent.created_at, ReviewEvent.id)):
                events[e.message_id].append(e)
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_({m.job_id for m in messages})))}
    pairs: list[dict[str, Any]] = []
    approved_by_prompt: dict[tuple[str, str], list[Message]] = {}
    for m in messages:
        if m.review_status == "approved" and m.prompt:
            approved_by_prompt.setdefault((m.job_id, m.prompt), []).append(m)

    def approval(m: Message) -> ReviewEvent | None:
        return next((e for e in reversed(events[m.id]) if e.action == "approve"), None)

    def pair(kind: str, chosen: Message, title: str, body: str, rejected_msg: Message, rejected_title: str,
             rejected_body: str, reason: str | None, decided: ReviewEvent) -> dict[str, Any]:
        job = jobs.get(chosen.job_id)
        ranked = chosen.ranked_items or [{}]
        lang = (chosen.template or "").rsplit(".", 1)[-1]
        campaign = campaign_of(job) if job else Campaign()
        locale = campaign.locale or ("zh_CN" if lang == "zh" else "en_US")
        approved_at = approval(chosen)
        return {
            "prompt": chosen.prompt, "chosen": answer_text(title, body),
            "rejected": answer_text(rejected_title, rejected_body), "kind": kind, "reason": reason,
            "job_id": chosen.job_id, "message_id": chosen.id, "rejected_message_id": rejected_msg.id,
            "template": chosen.template, "adapter": chosen.adapter, "reviewer": decided.actor,
            "decided_at": decided.created_at.isoformat(),
            # the past-push contract (generator.core.data.PastPush)
            "push_id": f"review-{chosen.id}-{rejected_msg.id}-{kind}",
            "group_id": f"review-{chosen.id}-{rejected_msg.id}",
            "campaign_type": (chosen.template or "generic").split(".")[0] or "generic", "title": title,
            "body": body, "locale": locale, "item_id": ranked[0].get("item_id"), "sends": 0, "clicks": 0,
            "sent_at": (approved_at or decided).created_at.isoformat(),
        }

    unpaired = 0
    for m in messages:
        trail = events[m.id]
        edits = [e for e in trail if e.action == "edit"]
        if m.review_status == "approved" and edits:
            original = (edits[0].old_title, edits[0].old_body)
            if original != (m.title, m.body) and original[0].strip():
                pairs.append(pair("edit", m, m.title, m.body, m, *original, None, approval(m) or edits[-1]))
        elif m.review_status == "rejected":
            rejection = next((e for e in reversed(trail) if e.action == "reject"), None)
            others = [o for o in approved_by_prompt.get((m.job_id, m.prompt), []) if o.id != m.id]
            others.sort(key=lambda o: (o.user_id != m.user_id, o.variant))
            if not others or rejection is None or not m.title.strip():
                unpaired += 1
                continue
            best = others[0]
            pairs.append(pair("reject", best, best.title, best.body, m, m.title, m.body, rejection.reason,
                              rejection))
    return pairs, unpaired


def export_pairs(store: Store, path: str | Path, job_id: str | None = None) -> tuple[int, int]:
    """Write the preference pairs to a JSONL (or CSV/Parquet) file atomically; returns (pairs, unpaired
    rejections)."""
    pairs, unpaired = preference_pairs(store, job_id)
    write_table(path, pairs, columns=PAIR_COLUMNS)
    return len(pairs), unpaired
