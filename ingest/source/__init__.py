"""The source: the MQTT connection that delivers messages and takes their acknowledgements.

Only the daemon imports this package; commands that ingest nothing never load it.
"""

from ingest.source.base import Source, open_source
from ingest.source.connection import Connection, SubscriberProtocol
from ingest.source.subscriber import MqttSource

__all__ = ["Connection", "MqttSource", "Source", "SubscriberProtocol", "open_source"]
