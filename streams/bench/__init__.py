"""The benchmarks and the test harnesses: run from a checkout only, not shipped in the wheel."""
