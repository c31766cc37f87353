"""A sentiment tagger of your own on product_review's slip, embedded or as a worker on Kafka.

It reads the customer's review before the token budget, scores it with a
small word list, and adds a system line telling the model the customer's
mood, so the reply (and the `sentiment` field of the answer) follows it.

Embedded (all agents in this process, the memory bus, SmolLM2 by default):

    python examples/custom_agent.py "The lid broke after a week, very disappointed"

As a worker on Kafka: put `sentiment` on the business's `steps` and route it
in the config that every worker reads,

    runtime:
      routes: {sentiment: relaychain.sentiment}
    businesses:
      product_review:
        steps: [moderate.input, memory.load, sentiment, budget, generate, moderate.output, format, memory.save]

then run it beside the built-in workers:

    relaychain worker examples.custom_agent:SentimentTagger --inbox relaychain.sentiment
"""

from __future__ import annotations

import asyncio
import re
import sys

from relaychain import Agent, App, Event, Job, Response, Settings, insert_step, load_settings
from relaychain.schemas import ChatMessage

POSITIVE = frozenset({"great", "good", "love", "fast", "perfect", "excellent", "happy", "recommend"})
NEGATIVE = frozenset({"broke", "broken", "loose", "bad", "slow", "disappointed", "refund", "terrible", "leaks"})
WORD = re.compile(r"[a-z']+")


class SentimentTagger(Agent[Job]):
    name = "sentiment"
    consumes = Job
    emits = (Job,)

    async def process(self, job: Job) -> Job:
        mood = sentiment_of(job.request.input or " ".join(m.content for m in job.request.messages if m.role == "user"))
        hint = ChatMessage(role="system", content=f'The customer sounds {mood}; set "sentiment" to "{mood}".')
        # Before the user's message, after the business's own system line.
        prompt = (*job.prompt[:-1], hint, *job.prompt[-1:])
        return job.advance(self.name, prompt=prompt)


def sentiment_of(text: str) -> str:
    words = WORD.findall(text.lower())
    score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


async def review(settings: Settings, text: str) -> Event:
    """Answer one product review embedded, with the tagger on the slip before the token budget."""
    settings = insert_step(settings, "product_review", "sentiment", before="budget")
    async with App(settings, agents=[SentimentTagger()]) as app:
        return await app.ask(business="product_review", input=text, vars={"product": "electric kettle", "rating": 2})


def main() -> int:
    text = " ".join(sys.argv[1:]) or "The lid broke after a week, very disappointed"
    answer = asyncio.run(review(load_settings(), text))
    print(answer.model_dump_json(indent=2))
    return 0 if isinstance(answer, Response) else 1


if __name__ == "__main__":
    sys.exit(main())
