"""Retries for RunPod's APIs: urllib3's ``Retry`` on the requests adapter, one policy each.

urllib3 tells a connect failure (the request never left, always safe to send again) from a
read failure (it may have arrived): ``allowed_methods`` names the methods that may be sent
again after a read failure or a 5xx. A 429 is retried for every method: RunPod refused the
request outright, so nothing ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, *range(500, 600)})


class RefusedIsSafe(Retry):
    """``Retry`` that also resends a non-idempotent request answered 429."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429:
            return True
        return super().is_retry(method, status_code, has_retry_after)


@dataclass(frozen=True)
class Backoff:
    """How many attempts, and capped exponential backoff with jitter between them."""

    base: float = 0.5
    cap: float = 8.0
    attempts: int = 4

    def retry(self, resend: frozenset[str]) -> Retry:
        """The policy: connect failures and 429 always retried; read failures and 5xx only
        for the methods in ``resend`` (those that may safely arrive twice; may be empty)."""
        return RefusedIsSafe(
            total=max(0, self.attempts - 1),
            read=None if resend else False,
            other=None if resend else 0,
            # urllib3 reads an empty collection as "every method": say "no read retries"
            # with read=False and only 429 among the statuses instead.
            allowed_methods=resend or None,
            status_forcelist=RETRY_STATUSES if resend else frozenset({429}),
            backoff_factor=self.base,
            backoff_max=self.cap,
            backoff_jitter=self.base,
            raise_on_status=False,  # the last answer reaches the caller, who words it
            respect_retry_after_header=False,
        )

    def adapter(self, resend: frozenset[str], pool_maxsize: int = 10) -> HTTPAdapter:
        return HTTPAdapter(max_retries=self.retry(resend), pool_maxsize=pool_maxsize)
