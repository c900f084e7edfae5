"""Managed authoritative DNS (issue 7): the customers' zones, validated through dnspython, served
by a data plane (the built-in server, or Knot DNS in production), with the query load measured
per zone (AUP R10, R11)."""
