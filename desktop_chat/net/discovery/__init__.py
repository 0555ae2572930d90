"""Finding chats on the LAN: DNS-SD (zeroconf) announcements, the UDP broadcast fallback and
the network check. Qt-free."""
