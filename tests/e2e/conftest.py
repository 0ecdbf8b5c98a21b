from testing.e2e import workers

__all__ = ["workers"]
