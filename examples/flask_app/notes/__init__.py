"""A Flask application using corequeue: see notes/app.py."""
