"""The threaded chat server: connections, the hub, outboxes, storage. Qt-free."""
