"""Customers, servers, IP assignments and domains, and the index of who owns an address."""
