"""The web client for phones and browsers: static files served by the chat server.

``index.html`` loads ``app.js`` and the ES modules it imports (``state.js``,
``connection.js``, ``messages.js``, ``panels.js``, ``presence.js``, ``outbox.js``,
``alerts.js``), ``style.css``, the icons and ``manifest.webmanifest``, and registers the service
worker ``sw.js``; :mod:`desktop_chat.net.server.http` serves exactly these (a fixed
allow-list). No build step, no framework, nothing loaded from elsewhere: the page works on a
LAN without internet access.
"""
