"""What every carrier adapter must do the same way, run over the carrier table
(``tests/providers/carriers.py``): classify the carrier's documented refusals, treat a timeout
as worth retrying, and keep its credentials out of every reason."""

from __future__ import annotations

import pytest

from bridge.model import SendFailed
from tests.carrier_server import CannedResponse
from tests.providers.carriers import CARRIERS
from tests.providers.harness import Carrier, Refusal

REFUSALS = [pytest.param(carrier, refusal, id=f"{carrier}-{refusal.status}-{n}")
            for carrier in CARRIERS for n, refusal in enumerate(carrier.refusals)]


@pytest.mark.parametrize(("carrier", "refusal"), REFUSALS)
async def test_send_errors_are_classified(carrier: Carrier, refusal: Refusal):
    result, _ = await carrier.send(carrier.msg, CannedResponse(refusal.status, refusal.body,
                                                               dict(refusal.headers)))
    assert isinstance(result, SendFailed)
    assert (result.retryable, result.code) == (refusal.retryable, refusal.code)
    assert result.retry_after == refusal.expected_retry_after()
    if refusal.says:
        assert refusal.says in result.reason
    assert not [s for s in carrier.secrets() if s in result.reason]
    assert result.accepted_parts == ()  # nothing went out


@pytest.mark.parametrize("carrier", CARRIERS, ids=str)
async def test_send_timeout_is_retryable(carrier: Carrier):
    result, requests = await carrier.send(carrier.msg, CannedResponse(200, {}, delay=1),
                                          timeout_seconds=0.2)
    assert isinstance(result, SendFailed) and result.retryable
    assert len(requests) == 1


def test_every_adapter_has_a_row():
    from bridge.providers.registry import PROVIDERS

    covered = {carrier.type_name for carrier in CARRIERS}
    assert covered == set(PROVIDERS) - {"generic", "sandbox"}
