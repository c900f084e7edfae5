"""The NOC's alerts: attacks on customers (an inbound flood, a random-subdomain flood on their
zones) that need the network's attention, not a case against the victim."""
