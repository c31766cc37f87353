"""examples/publish_from_python.py: requests published to Kafka from Python, every answer awaited."""

from __future__ import annotations

import pytest

from examples.publish_from_python import REQUESTS, publish
from relaychain import Response
from tests.examples.conftest import KafkaWorkers

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def test_every_request_gets_its_answer(kafka_workers: KafkaWorkers) -> None:
    answers = await publish(f"kafka://{kafka_workers.bootstrap}", REQUESTS, timeout=60)
    assert [a.request_id for a in answers] == [r.request_id for r in REQUESTS]
    assert all(isinstance(a, Response) for a in answers), answers
    assert answers[0].output["title"] and answers[1].output["comment"]
