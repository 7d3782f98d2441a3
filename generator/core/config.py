"""The one settings object. Every knob is an environment variable ``PUSHGEN_<NAME>`` (or a constructor argument)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BRAND = "Northwind Home & Outdoor"
"""The sample shop's brand: what a campaign names when it names none."""
REPO_ROOT = Path(__file__).resolve().parents[2]
_PACKAGED = Path(__file__).resolve().parents[1] / "_data"


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "pushgen"


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


class Settings(BaseSettings):
    """pushgen configuration.

    Defaults are the *embedded* set-up: SQLite in the user's data folder, in-process execution, no services.
    """

    model_config = SettingsConfigDict(env_prefix="PUSHGEN_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{_default_home() / 'pushgen.db'}",
        description="SQLAlchemy URL of the store. SQLite by default; e.g. postgresql+psycopg://host/db.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "pushgen",
        description="Where dequantised GGUF models (safetensors) and other derived artefacts are cached.",
    )
    adapters_dir: Path = Field(
        default_factory=lambda: _default_home() / "adapters",
        description="Registry folder of trained LoRA adapters.",
    )
    scorers_dir: Path = Field(
        default_factory=lambda: _default_home() / "scorers",
        description="Folder of fine-tuned scorers; the one named 'default' is used when present.",
    )
    ctr_dir: Path = Field(
        default_factory=lambda: _default_home() / "ctr",
        description="Registry folder of trained click-through models; the one named 'default' is used when present.",
    )
    prompts_dir: Path = Field(
        default_factory=lambda: _first_existing(REPO_ROOT / "prompts", _PACKAGED / "prompts"),
        description="Folder of the Jinja prompt templates.",
    )
    shop_dir: Path = Field(
        default_factory=lambda: _first_existing(REPO_ROOT / "examples" / "shop", _PACKAGED / "shop"),
        description="The sample shop used by `pushgen demo`.",
    )
    generator_model: str = Field(default="smollm2-135m", description="Registry name, HF id or folder.")
    locale_models: dict[str, str] = Field(
        default_factory=lambda: {"zh": "gemma3-270m"},
        description="Generator per language (JSON, e.g. '{\"zh\": \"gemma3-270m\"}'); languages not listed, or "
                    "whose model package is not installed, use generator_model.",
    )
    default_locale: str = Field(default="en_US", description="The shop's default locale: how prices, dates and "
                                "counts are written for users whose locale CLDR does not know (with a warning).")
    scorer_model: str = Field(default="minilm", description="Registry name, HF id or folder.")
    broker_url: str | None = Field(
        default=None, description="Celery broker (redis://... or amqp://...); None runs tasks in process.")
    result_backend: str | None = Field(default=None, description="Celery result backend; default: the broker's.")
    visibility_timeout: int = Field(default=300, ge=10,
                                    description="Seconds before Redis redelivers an unacknowledged task.")
    chunk_size: int = Field(default=16, ge=1, description="Users per queued chunk (a few seconds of work each).")
    max_deliveries: int = Field(default=3, ge=1, description="Deliveries of one chunk before it is dead-lettered.")
    requeue_after: float = Field(default=300, gt=0,
                                 description="Seconds after which a chunk sent but not started, or started but not "
                                             "finished, counts as lost (a broker restart, a dead worker) and is "
                                             "sent again by the recovery pass.")
    recover_every: float = Field(default=30, ge=0,
                                 description="Seconds between recovery passes in each worker (0: none; then run "
                                             "`pushgen job recover` from cron).")
    link_hosts: list[str] = Field(
        default_factory=lambda: ["shop.example.com", "www.amazon.com"],
        description="Hosts a deep link may point to (JSON list; '*.example.com' allows its subdomains); the default "
                    "holds those of the bundled sample shop and of the Amazon importer. An item whose URL is "
                    "elsewhere, or not http(s), gets no push: its chunk fails naming the item.")
    review_image_hosts: list[str] = Field(
        default_factory=list, description="Hosts the review pages may load item images from (JSON list; same "
        "patterns). Empty: no image leaves the app; a placeholder is shown.")
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest HTTP request body accepted.")
    device: str | None = Field(default=None, description="'cuda', 'cpu' or None to pick CUDA when present.")
    batch_size: int = Field(default=32, ge=1, description="Prompts per generation batch.")
    max_new_tokens: int = Field(default=48, ge=1, description="Cap on generated tokens per message.")
    language_max_new_tokens: dict[str, int] = Field(
        default={"zh": 96}, description="Token cap per language where copy takes more tokens than in English "
        "(Chinese on Gemma's tokenizer: a title and a body with a product name need 60-90 tokens).")
    cpu_int8: bool = Field(default=False, description="On CPU, generate with dynamic int8 Linear layers (faster "
                           "matrix products; greedy copy can differ slightly from fp32's). LoRA layers stay float.")
    decode: Literal["auto", "dynamic", "static", "graph"] = Field(
        default="auto", description="Decoding loop: 'static' (preallocated KV cache, finished rows dropped when "
        "that pays: best on CPU), 'graph' (fixed shapes, one CUDA graph per decode step: best on GPU), 'dynamic' "
        "(growing cache: models with sliding-window layers); 'auto' picks 'dynamic' for models with sliding-window "
        "layers, else 'graph' on CUDA and 'static' on CPU.")
    seed: int = Field(default=0, description="Seed for sampling; greedy decoding ignores it.")
    check_processes: int = Field(
        default=1, ge=1, description="Processes that check a chunk's candidates against the guardrails (forked "
        "for each round from the worker, so they share its memory; 64 users at least each). 1: the worker's own "
        "process. On a GPU worker, give it the cores the worker may use: checking is per user and costs more "
        "host time per message than anything else around the model.")

    # Push providers: what the sender registry (workers/senders/registry.py) builds a sender from. Only the chosen
    # provider's are needed; a missing one is an error naming its variable.
    fcm_project: str | None = Field(default=None, description="FCM: the Firebase project id.")
    fcm_access_token: SecretStr | None = Field(
        default=None, description="FCM: an OAuth 2 access token with the firebase.messaging scope.")
    fcm_url: str | None = Field(default=None, description="FCM: the API's origin; None: https://fcm.googleapis.com "
                                "(a stand-in's URL in tests).")
    apns_team_id: str | None = Field(default=None, description="APNs: the Apple developer team id.")
    apns_key_id: str | None = Field(default=None, description="APNs: the id of the .p8 signing key.")
    apns_key_file: Path | None = Field(default=None, description="APNs: the .p8 signing key (an EC P-256 PEM file).")
    apns_topic: str | None = Field(default=None, description="APNs: the app's bundle id.")
    apns_url: str | None = Field(default=None, description="APNs: the API's origin; None: "
                                 "https://api.push.apple.com (https://api.sandbox.push.apple.com for development "
                                 "builds).")
    apns_ca: Path | None = Field(default=None, description="APNs: a CA file to trust (e.g. a stand-in's); None: "
                                 "the system's.")
    webhook_url: str | None = Field(default=None, description="Webhook: where to POST each push.")
    webhook_secret: SecretStr | None = Field(default=None, description="Webhook: the key that signs each body "
                                             "(HMAC-SHA256); None: unsigned.")
    dry_run_out: Path | None = Field(default=None, description="Dry run: a JSONL file it appends each push to; "
                                     "None: kept in memory only.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
