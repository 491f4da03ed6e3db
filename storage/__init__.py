"""Persistence: typed SQLAlchemy models, migrations and the unit of work.

Imports neither Flask nor the engine.
"""
