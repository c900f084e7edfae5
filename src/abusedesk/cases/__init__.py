"""The Methods of Resolution: the pure state machine, the case service, the deadline sweeper."""
