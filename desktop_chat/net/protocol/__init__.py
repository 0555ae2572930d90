"""The wire: events, framing, names and TLS facts that the server and every client share.

Imports no socket, thread or Qt.
"""
