"""A FastAPI application using corequeue: see README.md beside this package."""
