"""The Kafka backend of the bus (aiokafka); aiokafka types never leave this package."""

from bus.kafka.bus import KafkaBus
from bus.kafka.settings import KafkaSettings, SecurityProtocol
from bus.kafka.subscription import KafkaSubscription

__all__ = ["KafkaBus", "KafkaSettings", "KafkaSubscription", "SecurityProtocol"]
