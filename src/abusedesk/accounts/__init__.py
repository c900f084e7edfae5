"""Staff and customer users, roles, passwords and API tokens."""
