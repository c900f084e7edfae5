"""Every feature's tables, imported in one place so that the metadata (and Alembic) sees all."""

from abusedesk.accounts.models import ApiToken, User
from abusedesk.audit.models import AuditEntry, AuditHead
from abusedesk.cases.models import Case, CaseEvent, case_reports
from abusedesk.dns.models import DnsState, LoadNotice, LoadSample, RRSet, Zone, ZoneChange
from abusedesk.enforce.models import EnforcementAction
from abusedesk.intake.models import Report
from abusedesk.inventory.models import (
    Account,
    Contact,
    Domain,
    InventoryState,
    IPAssignment,
    Server,
)
from abusedesk.noc.models import NocAlert
from abusedesk.notify.models import OutboxMessage
from abusedesk.store.base import Base
from abusedesk.traffic.models import FlowExporter

__all__ = [
    "Account",
    "ApiToken",
    "AuditEntry",
    "AuditHead",
    "Base",
    "Case",
    "CaseEvent",
    "Contact",
    "DnsState",
    "Domain",
    "EnforcementAction",
    "FlowExporter",
    "IPAssignment",
    "InventoryState",
    "LoadNotice",
    "LoadSample",
    "NocAlert",
    "OutboxMessage",
    "RRSet",
    "Report",
    "Server",
    "User",
    "Zone",
    "ZoneChange",
    "case_reports",
]
