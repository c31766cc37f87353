"""The Kafka backend of the bus (aiokafka); aiokafka types never leave this package."""

from relaychain.bus.kafka.bus import KafkaBus
from relaychain.bus.kafka.settings import KafkaSettings, SecurityProtocol
from relaychain.bus.kafka.subscription import KafkaSubscription

__all__ = ["KafkaBus", "KafkaSettings", "KafkaSubscription", "SecurityProtocol"]
