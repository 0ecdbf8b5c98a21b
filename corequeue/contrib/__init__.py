"""Integrations with frameworks (optional extras): :mod:`corequeue.contrib.django`."""
