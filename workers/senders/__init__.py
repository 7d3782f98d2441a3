"""Push senders: FCM HTTP v1, APNs (HTTP/2, token auth), a webhook and a dry run, behind one interface.

Every sender builds its provider's message from a provider-neutral push (:func:`generator.experiments.ab.push_payload`),
checks the 4,096-byte payload limit after JSON encoding, and classifies the provider's answer as ``sent``,
``invalid_token`` (never retried; the token is marked dead), ``too_large``, ``failed`` or ``retry``.
:meth:`Sender.deliver` adds the rate limit (a token bucket) and retries with exponential backoff and jitter on
429 and 5xx, honouring ``Retry-After``.
"""

from workers.senders.apns import ApnsConfig, ApnsSender
from workers.senders.base import DeliveryResult, RetryPolicy, Sender, TokenBucket
from workers.senders.dryrun import DryRunSender
from workers.senders.fcm import FcmConfig, FcmSender
from workers.senders.webhook import WebhookSender

__all__ = ["ApnsConfig", "ApnsSender", "DeliveryResult", "DryRunSender", "FcmConfig", "FcmSender", "RetryPolicy",
           "Sender", "TokenBucket", "WebhookSender"]
