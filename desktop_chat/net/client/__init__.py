"""The desktop app's network side: the Qt-free link and transport, certificate pins, and the
QThread worker (``worker``, the only module under ``net`` that imports Qt)."""
