"""Developer tools that are not part of the worker: the peer benchmark."""
