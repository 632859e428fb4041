"""Networking: TCP + Noise transport, peers and mDNS discovery, on trio."""
