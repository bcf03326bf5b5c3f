"""Pure domain logic: functions and frozen dataclasses from events and state to decisions."""
