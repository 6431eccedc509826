"""Prometheus metrics of the service: jobs by kind and state, job durations, queue depth, claws per Mini, and the
fleet gauges from the newest health samples (``clawfarm_mini_*``, ``clawfarm_claw_*``)."""
from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from .db import Claw, Job
from .jobs import JOB_DURATION


def make_registry(svc) -> CollectorRegistry:
    """A registry with the job-duration histogram and the fleet collector of ``svc``."""
    registry = CollectorRegistry()
    registry.register(JOB_DURATION)
    registry.register(FleetCollector(svc))
    return registry


class FleetCollector:
    """Prometheus collector of the job store and the newest health samples."""

    def __init__(self, svc):
        self.svc = svc

    def collect(self):
        jobs = GaugeMetricFamily("clawfarm_jobs", "Jobs in the store by kind and state", labels=["kind", "state"])
        queue = GaugeMetricFamily("clawfarm_job_queue_depth", "Jobs waiting to run")
        claws = GaugeMetricFamily("clawfarm_mini_claws", "Claws the service knows on each Mini", labels=["mini"])
        with self.svc.Session() as s:
            for kind, state, count in s.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)):
                jobs.add_metric([kind, state], count)
            queue.add_metric([], s.scalar(select(func.count()).select_from(Job).where(Job.state == "queued")) or 0)
            per_mini = dict(s.execute(select(Claw.mini, func.count()).where(Claw.present == 1).group_by(Claw.mini)).all())
        try:
            names = self.svc.inventory.minis()
        except RuntimeError:
            names = {}
        for name in sorted(set(names) | {m for m in per_mini if m}):
            claws.add_metric([name], per_mini.get(name, 0))
        yield from (jobs, queue, claws)
        yield from fleet_gauges(self.svc)

def fleet_gauges(svc):
    """Per Mini and per claw gauges from the newest samples (Prometheus naming: base units, ratios 0-1)."""
    cpu = GaugeMetricFamily("clawfarm_mini_cpu_usage_ratio", "Host CPU in use (0-1) at the last sample", labels=["mini"])
    mem_used = GaugeMetricFamily("clawfarm_mini_memory_used_bytes", "Host memory in use", labels=["mini"])
    mem_total = GaugeMetricFamily("clawfarm_mini_memory_total_bytes", "Host memory", labels=["mini"])
    disk_used = GaugeMetricFamily("clawfarm_mini_disk_used_bytes", "Used bytes per volume", labels=["mini", "mount"])
    disk_total = GaugeMetricFamily("clawfarm_mini_disk_total_bytes", "Size of each volume", labels=["mini", "mount"])
    sample_ts = GaugeMetricFamily("clawfarm_mini_last_sample_timestamp_seconds", "UNIX time of the last health sample", labels=["mini"])
    up = GaugeMetricFamily("clawfarm_claw_up", "1 when the claw's gateway answered its health handshake", labels=["mini", "claw_id"])
    rss = GaugeMetricFamily("clawfarm_claw_resident_memory_bytes", "RSS of the gateway's process tree", labels=["mini", "claw_id"])
    runs = GaugeMetricFamily("clawfarm_claw_launchd_runs", "How often launchd started the gateway (restarts + 1)", labels=["mini", "claw_id"])
    browser_up = GaugeMetricFamily("clawfarm_claw_browser_running", "1 when the claw's browser (Chromium) runs", labels=["mini", "claw_id"])
    browser_rss = GaugeMetricFamily("clawfarm_claw_browser_resident_memory_bytes", "RSS of the claw's browser process tree",
                                    labels=["mini", "claw_id"])
    browser_start = GaugeMetricFamily("clawfarm_claw_browser_start_timestamp_seconds",
                                      "UNIX time the claw's browser started (a new value at each start)", labels=["mini", "claw_id"])
    backup = GaugeMetricFamily("clawfarm_claw_last_backup_timestamp_seconds", "UNIX time of the last successful backup",
                               labels=["mini", "claw_id"])
    provisioned = GaugeMetricFamily("clawfarm_claw_provisioned_timestamp_seconds",
                                    "UNIX time of the claw's (last) provision; a claw never backed up alerts 24 h after it",
                                    labels=["mini", "claw_id"])
    with svc.Session() as s:
        records = {c.claw_id: c for c in s.scalars(select(Claw).where(Claw.present == 1))}
    for row in svc.monitor.samples():
        if not row.claw_id:
            host = row.data.get("mini") or {}
            sample_ts.add_metric([row.mini], row.sampled_at)
            if host.get("cpu_percent") is not None:
                cpu.add_metric([row.mini], host["cpu_percent"] / 100.0)
            if host.get("memory"):
                mem_used.add_metric([row.mini], host["memory"]["used_bytes"])
                mem_total.add_metric([row.mini], host["memory"]["total_bytes"])
            for d in host.get("disks") or []:
                disk_used.add_metric([row.mini, d["mount"]], d["used_bytes"])
                disk_total.add_metric([row.mini, d["mount"]], d["total_bytes"])
        elif row.claw_id in records:
            labels = [row.mini, row.claw_id]
            up.add_metric(labels, 1.0 if row.data.get("health") == "ok" else 0.0)
            if row.data.get("rss_bytes") is not None:
                rss.add_metric(labels, row.data["rss_bytes"])
            if row.data.get("runs") is not None:
                runs.add_metric(labels, row.data["runs"])
            browser = row.data.get("browser")
            if browser:
                browser_up.add_metric(labels, 1.0 if browser.get("running") else 0.0)
                browser_rss.add_metric(labels, browser.get("rss_bytes") or 0)
                if browser.get("started_at"):
                    browser_start.add_metric(labels, browser["started_at"])
            stamp = ((records[row.claw_id].record or {}).get("last_backup") or {}).get("finished_at")
            if stamp:
                backup.add_metric(labels, datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
            made = (records[row.claw_id].record or {}).get("provisioned_at")
            if made:
                provisioned.add_metric(labels, datetime.strptime(made, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    return (cpu, mem_used, mem_total, disk_used, disk_total, sample_ts, up, rss, runs, backup, provisioned, browser_up, browser_rss,
            browser_start)

