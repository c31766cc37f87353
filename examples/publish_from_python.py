"""Publish requests to Kafka from Python and await their answers, with workers running elsewhere.

    relaychain worker router moderator memory retriever tokenizer generator formatter --bus kafka://127.0.0.1:9092
    python examples/publish_from_python.py kafka://127.0.0.1:9092

Each request is a `Request`; each answer is a `Response`, an `Error` or a
`Blocked`, matched to its request by id. `submit` keeps them all in flight at
once; `ask` would wait for each in turn.
"""

from __future__ import annotations

import asyncio
import sys

from relaychain import Client, Event, Request, Response

REQUESTS = [
    Request(
        business="ops_push",
        input="20% off all kettles this weekend",
        vars={"campaign": "Double 11", "audience": "new users"},
    ),
    Request(
        business="news_comment",
        input="The new line links the airport to the city centre in 25 minutes",
        vars={"headline": "City opens a new metro line"},
    ),
]


async def publish(bus_url: str, requests: list[Request], *, timeout: float = 120.0) -> list[Event]:
    """The answers to `requests`, in the same order."""
    async with Client.connect(bus_url, timeout=timeout) as client:
        futures = [await client.submit(request) for request in requests]
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))


def main() -> int:
    answers = asyncio.run(publish(sys.argv[1] if len(sys.argv) > 1 else "kafka://127.0.0.1:9092", REQUESTS))
    for answer in answers:
        print(answer.model_dump_json())
    return 0 if all(isinstance(answer, Response) for answer in answers) else 1


if __name__ == "__main__":
    sys.exit(main())
