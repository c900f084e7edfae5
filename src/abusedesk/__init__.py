"""abusedesk: the abuse desk and Acceptable Use Policy enforcement system of a hosting provider."""

__version__ = "0.1.0"
