"""Benchmark scenarios; each writes a JSON report and a short table under bench/reports/."""
