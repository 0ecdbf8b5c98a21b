from tests.e2e.harness import workers

__all__ = ["workers"]
