"""The project's own test harnesses (not shipped): fault injection for real worker processes."""
