"""Generic carrier: a carrier described entirely in the config file.

The reference, with a worked example, is ``config/generic.example.toml`` (the tests load it).
The package: ``config`` (the models the operator writes; each ``auth`` model applies itself to
a request), ``paths`` (dotted field paths and the URL template), ``signature`` (the HMAC
webhook check) and ``provider`` (sending and parsing).

Decisions and sources
---------------------
- The HMAC shapes are the common ones: GitHub's ``X-Hub-Signature-256: sha256=<hex>`` over the
  raw body (its published test vector is in the tests: docs.github.com "Validating webhook
  deliveries"), Stripe/Slack-style timestamp-prefixed bodies, and URL+body signing. [doc]
- The tests configure this adapter as Twilio (form send, form webhooks; providers.md §1,
  [spec]/[sdk]) and as Telnyx (JSON send and webhooks; providers.md §2, [sdk] telnyx-python
  types; error codes 40300 "Blocked due to STOP message" and 40310 "HTTP 400" from
  developers.telnyx.com [doc]) and check it against the real Twilio adapter.
- A text longer than ``send.max_chars`` goes out by the base's multi-part rule: parts already
  accepted are never sent again on a retry.
"""

from bridge.providers.generic.config import GenericConfig
from bridge.providers.generic.provider import MAX_MEDIA, GenericProvider

__all__ = ["MAX_MEDIA", "GenericConfig", "GenericProvider"]
