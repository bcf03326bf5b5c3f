"""The chaos soak (`rewards chaos`): runs from a checkout only, not shipped in the wheel."""
