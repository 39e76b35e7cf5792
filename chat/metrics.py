"""Prometheus metrics of one node, served at GET /metrics (prometheus-client's text format).

prometheus-client keeps its collectors in a process-wide registry; this module owns them on
purpose, and nothing else keeps counters. The job queue is shared by every node and worker,
so its figures are read from the database at scrape time (`JobQueueCollector`), not counted.
"""
import logging
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

CONNECTED = Gauge("chat_connected_clients", "Socket.IO connections signed in on this node")
ROOMS = Gauge("chat_rooms_with_local_members", "Rooms with members on this node")
RECEIVED = Counter("chat_messages_received_total", "Messages accepted from clients on this node")
DELIVERED = Counter("chat_messages_delivered_total", "Message deliveries to members on this node")
RECOVERED = Counter("chat_messages_recovered_total", "Messages fetched from the database after a missed delivery")
BUS_IN = Counter("chat_bus_messages_in_total", "Frames received from the cluster bus")
BUS_OUT = Counter("chat_bus_messages_out_total", "Frames published to the cluster bus")
BUS_LAG = Histogram("chat_bus_lag_seconds", "Commit-to-delivery time of messages from other nodes",
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
DB_WRITE = Histogram("chat_db_write_seconds", "Duration of one batched message commit",
                     buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
DB_BATCH = Histogram("chat_db_write_batch_size", "Messages per commit", buckets=(1, 2, 5, 10, 20, 50, 100, 200))


class NodeMetrics:
    """The hooks the store, feed and bus call; cheap enough for the hot path."""

    def observe_commit(self, seconds, count):
        DB_WRITE.observe(seconds)
        DB_BATCH.observe(count)
        RECEIVED.inc(count)

    def delivered(self, recipients):
        DELIVERED.inc(recipients)

    def recovered(self, count):
        RECOVERED.inc(count)

    def bus_in(self):
        BUS_IN.inc()

    def bus_out(self):
        BUS_OUT.inc()

    def bus_lag(self, committed_at):
        BUS_LAG.observe(max(0.0, time.time() - committed_at))

    @staticmethod
    def refresh(connections, rooms):
        CONNECTED.set(connections)
        ROOMS.set(rooms)


class JobQueueCollector:
    """The background job queue (chat.jobs), read when /metrics is scraped: rows by status
    (FAILED: jobs that failed for good, kept CHAT_JOB_KEEP_FAILED_SECS, in the admin), the
    jobs due now (queue depth) and those waiting to retry after a failure."""

    def describe(self):
        return []  # no database work when the collector is registered

    def collect(self):
        from chat import jobs

        try:
            counts, due, retrying = jobs.queue_stats()
        except Exception:  # the database is down: /metrics still answers, without these
            logging.getLogger(__name__).warning("job queue figures unavailable", exc_info=True)
            return
        by_status = GaugeMetricFamily("chat_jobs", "Background job rows by status", labels=["status"])
        for status, count in sorted(counts.items()):
            by_status.add_metric([status.lower()], count)
        yield by_status
        yield GaugeMetricFamily("chat_jobs_due", "Jobs ready to run now (queue depth)", value=due)
        yield GaugeMetricFamily("chat_jobs_retrying", "Jobs waiting to retry after a failed attempt", value=retrying)
        yield GaugeMetricFamily("chat_jobs_failed", "Jobs that failed every attempt (kept for the admin)",
                                value=counts.get("FAILED", 0))


REGISTRY.register(JobQueueCollector())
