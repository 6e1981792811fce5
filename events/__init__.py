"""Messages, domain events, their codecs and the SQLite event store.

The lowest layer: it imports nothing else of adwd's.
"""
