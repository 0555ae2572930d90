"""The Qt-free network core: protocol, server, storage (and the Qt client worker)."""
