"""A pytest plugin (registered by test_full_mini.py's ``pytest_plugins``) that prints the full Mini's measured figures
at the end of the run, so they appear in .ci/run output whether or not the tests' stdout was captured.

A test records a figure with ``record_property("full_mini: <name>", "<value>")``. The figures travel on the test
reports (also from pytest-xdist workers), and the summary prints every one found. They are also written to
``reports/full-mini.txt`` by the test module, for reading after the run.
"""
from __future__ import annotations

PREFIX = "full_mini: "


def pytest_terminal_summary(terminalreporter):
    """Print the figures the full-Mini test recorded (one line each), in recording order."""
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if isinstance(name, str) and name.startswith(PREFIX):
                    lines.append(f"{name[len(PREFIX):]}: {value}")
    if lines:
        terminalreporter.write_sep("=", "full Mini: measured figures")
        for line in lines:
            terminalreporter.write_line(line)
