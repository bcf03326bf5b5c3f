"""The `rewards` command line: the operators' commands (shipped in the wheel with the worker)."""
