"""corequeue's side-by-side benchmark suite: ``python -m benchmarks`` (see README.md)."""
