"""The web app: the REST API (`api/`) now; the staff console (`staff/`), the customer portal
(`portal/`) and the public complaint form (`public/`) each come as a router of their own."""
