"""Report formats: every shared fixture read right, the formats without fixtures from samples
written here, DMCA completeness, and hostile input (zip bombs, huge cells, truncated and random
bytes, hostile HTML and XML) ending in a typed error or a plain result, never a crash."""

from __future__ import annotations

import base64
import contextlib
import email.message
import io
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import abusedesk.intake.formats as formats
from abusedesk.intake.formats import (
    PARSERS,
    LimitExceeded,
    Limits,
    MalformedReport,
    ParsedReport,
    ParseError,
    ReportFormat,
    _mail,
    detect_and_parse,
    dmca,
    shadowserver,
    xarf_v4,
)
from abusedesk.intake.formats._extract import html_to_text, refang, resources
from abusedesk.policy.choices import Category

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reports"
IN_CI = os.environ.get("CI", "").lower() == "true"


def fixture(relative: str) -> bytes:
    path = FIXTURES / relative
    if not path.is_file():
        if IN_CI:
            pytest.fail(
                f"fixture {path} is missing, and CI=true: the shared fixtures must be there"
            )
        pytest.skip(f"the shared fixtures are not here ({FIXTURES})")
    return path.read_bytes()


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Expect:
    format: ReportFormat
    reporter_email: str
    addresses: tuple[str, ...]
    event_time: str
    urls: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    port: int | None = None
    category: Category | None = None
    kind: str = ""
    reporter_name: str = ""
    findings: int = 1
    last_address: str = ""  # feeds: the last row's address


ARF = ReportFormat.ARF
SPAM = Category.SPAM


def _arf(ip: str, when: str, sender: str, domain: str = "", name: str = "") -> Expect:
    return Expect(
        ARF, sender, (ip,), when, (), (domain,) if domain else (), None, SPAM, "abuse", name
    )


def _acns(ip: str, port: int, when: str, sender: str = "notices.p2p@ip-echelon.com") -> Expect:
    return Expect(
        ReportFormat.DMCA_ACNS,
        sender,
        (ip,),
        when,
        port=port,
        category=Category.COPYRIGHT,
        kind="bittorrent",
        reporter_name="IP-Echelon Compliance",
    )


def _ss(first: str, last: str, rows: int, when: str, port: int, category: Category) -> Expect:
    return Expect(
        ReportFormat.SHADOWSERVER,
        "autoreports@shadowserver.org",
        (first,),
        when,
        port=port,
        category=category,
        reporter_name="Root User",
        findings=rows,
        last_address=last,
    )


def _v4(
    source: str,
    when: str,
    contact: str,
    org: str,
    category: Category,
    kind: str,
    urls: tuple[str, ...] = (),
    domains: tuple[str, ...] = (),
    port: int | None = None,
    ip: bool = True,
) -> Expect:
    return Expect(
        ReportFormat.XARF_V4,
        contact,
        (source,) if ip else (),
        when,
        urls,
        domains,
        port,
        category,
        kind,
        org,
    )


V = Category.VULNERABLE_SERVICE
NA = Category.NETWORK_ABUSE
CR = Category.COPYRIGHT
NETCRAFT = "takedown-response+0317484@netcraft.com"
LONG_PATH = (
    "/ints.cancellation.form.your.pc.is.now.connected/to.ituneserver.with.ssl2active"
    ".applecustomers.webformlogin2/"
)

# What each shared fixture says, read from the files themselves.
EXPECTED: dict[str, Expect] = {
    "arf/AOL_example_1.eml": _arf(
        "10.17.18.1", "2016-01-19T19:32:40", "scomp@aol.net", "server.domain5.tld"
    ),
    "arf/Bluetie_example_1.eml": _arf(
        "10.17.18.3", "2016-01-16T06:10:14", "feedbackloop@feedback.bluetie.com", "excite.com"
    ),
    "arf/Comcast_example_1.eml": _arf(
        "10.17.18.5",
        "2016-01-19T12:42:56",
        "feedbackloop@comcastfbl.senderscore.net",
        "comcast.net",
    ),
    "arf/Cox_example_1.eml": _arf(
        "10.17.18.7", "2015-12-21T22:52:30", "feedbackloop@fbl.cox.net", "cox.net"
    ),
    "arf/Fastmail_example_1.eml": _arf(
        "10.17.18.9", "2016-01-16T11:09:22", "feedbackloop@fbl.fastmail.com", "emailplus.org"
    ),
    "arf/OpenSRS_example_1.eml": _arf(
        "10.17.18.12", "2016-01-17T06:57:49", "feedbackloop@fbl.hostedemail.com", "bex.net"
    ),
    "arf/Rackspace_example_1.eml": _arf(
        "10.17.18.14",
        "2015-12-29T05:21:10",
        "feedbackloop@fbl.apps.rackspace.com",
        "olympiaintl.com",
    ),
    "arf/RoadRunner_example_1.eml": _arf(
        "10.17.18.16", "2016-01-13T16:41:53", "feedbackloop@feedback.postmaster.rr.com"
    ),
    "arf/Synacor_example_1.eml": _arf(
        "10.17.18.21", "2016-01-10T21:56:23", "feedbackloop@fbl.synacor.com", "mymts.net"
    ),
    "arf/USANet_example_1.eml": _arf(
        "10.17.18.23", "2015-10-14T06:59:38", "feedbackloop@fbl.usa.net", "kjo.com.sa"
    ),
    "arf/Yahoo_example_1.eml": _arf(
        "10.17.18.25",
        "2016-01-18T23:57:24",
        "feedback@arf.mail.yahoo.com",
        name="Yahoo! Mail AntiSpam Feedback",
    ),
    "arf/Zoho_example_1.eml": _arf(
        "10.17.18.28",
        "2015-09-07T15:58:04",
        "feedbackloop@fbl.zoho.com",
        name="Zoho Feedback Loop Report",
    ),
    "arf/spamexperts_1.eml": _arf(
        "172.16.10.13", "2015-08-04T08:51:18", "admin@server1.test17.example.com"
    ),
    "arf/spamexperts_2.eml": _arf(
        "192.168.1.12", "2015-08-04T08:51:17", "admin@server1.test17.example.com"
    ),
    "arf/spamexperts_3.eml": _arf(
        "10.0.2.35", "2015-08-04T11:01:11", "admin@server1.test17.example.com"
    ),
    "arf/spamexperts_4.eml": _arf(
        "10.0.2.35", "2015-08-04T11:01:14", "admin@server1.test17.example.com"
    ),
    "arf/spamexperts_5.eml": _arf(
        "10.0.2.35", "2015-08-04T11:01:10", "admin@server1.test17.example.com"
    ),
    "dmca-acns/ip-echelon_sample1.eml": _acns("192.168.2.200", 35657, "2015-11-13T20:35:03"),
    "dmca-acns/ip-echelon_sample2.eml": _acns("192.168.2.212", 58688, "2015-11-16T05:45:49"),
    "dmca-acns/ip-echelon_sample3.eml": _acns("192.168.2.100", 3326, "2015-11-18T05:02:09"),
    "dmca-acns/ip-echelon_sample4.eml": _acns("192.168.2.100", 18525, "2015-11-17T11:05:41"),
    "dmca-acns/ip-echelon_sample5.eml": _acns("192.168.2.200", 1037, "2015-11-18T11:05:53"),
    "dmca-acns/ip-echelon_sample6.eml": _acns("192.168.3.2", 51413, "2015-11-18T08:25:43"),
    "dmca-acns/ip-echelon_sample7.eml": _acns("192.168.3.2", 51413, "2015-11-18T17:46:51"),
    "dmca-acns/ip-echelon_sample8.eml": _acns(
        "192.168.3.2", 50321, "2015-11-27T11:58:43", "notices.warner@ip-echelon.com"
    ),
    "shadowserver/2015-01-01-dns_openresolver-sample-asn.csv.zip.eml": _ss(
        "208.70.149.107", "31.42.105.195", 5, "2013-10-10T00:05:10", 53, V
    ),
    "shadowserver/2015-01-01-scan_ipmi-sample-asn.csv.zip.eml": _ss(
        "199.238.169.219", "206.214.64.64", 9, "2014-06-19T01:08:56", 623, V
    ),
    "shadowserver/2015-01-01-scan_memcached-sample-asn.csv.zip.eml": _ss(
        "167.160.165.190", "221.130.4.205", 9, "2015-01-22T01:30:25", 11211, V
    ),
    "shadowserver/2015-01-01-scan_mssql-sample-asn.csv.zip.eml": _ss(
        "110.88.113.98", "187.45.202.36", 10, "2015-02-04T07:38:43", 1434, V
    ),
    "shadowserver/2015-01-01-scan_nat_pmp-sample-asn.csv.zip.eml": _ss(
        "177.9.199.160", "113.116.218.16", 7, "2014-12-19T07:08:59", 5351, V
    ),
    "shadowserver/2015-01-01-scan_netbios-sample-asn.csv.zip.eml": _ss(
        "118.232.245.224", "190.177.250.57", 8, "2014-03-16T00:13:19", 137, V
    ),
    "shadowserver/2015-01-01-scan_ntp-sample-asn.csv.zip.eml": _ss(
        "76.22.142.205", "91.191.233.205", 9, "2014-03-21T02:13:17", 123, V
    ),
    "shadowserver/2015-01-01-scan_redis-sample-asn.csv.zip.eml": _ss(
        "98.126.92.5", "192.241.235.129", 13, "2015-01-19T12:10:01", 6379, V
    ),
    "shadowserver/2015-01-01-sinkhole_http_drone-sample-asn.csv.zip.eml": _ss(
        "202.86.21.11", "82.115.23.172", 8, "2010-08-31T00:09:04", 8726, Category.MALWARE
    ),
    "xarf-legacy/Blocklistde_Example_1.eml": Expect(
        ReportFormat.XARF_LEGACY,
        "autogenerated@blocklist.de",
        ("10.0.2.150",),
        "2014-01-31T06:19:02",
        port=80,
        category=SPAM,
        kind="regbot",
        reporter_name="Abuse-Team (auto-generated)",
    ),
    "xarf-legacy/Cleanmx_Example_1.eml": Expect(
        ReportFormat.XARF_LEGACY,
        "abuse@clean-mx.de",
        ("192.168.2.20",),
        "2015-06-07T19:09:11",
        port=25,
        category=SPAM,
        kind="harvesting",
        reporter_name="Abuse-Team",
    ),
    "xarf-legacy/Cleanmx_Example_2.eml": Expect(
        ReportFormat.CLEANMX,
        "abuse@clean-mx.de",
        ("172.16.10.13",),
        "2015-09-14T05:49:54",
        urls=("http://8f2e67c462.victim.tld/",),
        domains=("victim.tld",),
        category=Category.MALWARE,
        kind="viruses",
    ),
    "xarf-legacy/Netcraft_Example_1.eml": Expect(
        ReportFormat.XARF_LEGACY,
        NETCRAFT,
        ("10.0.2.2",),
        "2015-07-23T01:58:17",
        urls=("http://www.domain.tld/scripts/ufo.js",),
        port=80,
        category=Category.MALWARE,
        kind="malware-attack",
        reporter_name="Netcraft Takedown Service",
    ),
    "xarf-legacy/Netcraft_Example_2.eml": Expect(
        ReportFormat.XARF_LEGACY,
        NETCRAFT,
        ("fdf1:cb9d:f59e:19b0::1",),
        "2015-07-23T01:58:17",
        urls=("http://www.domain6.tld/scripts/ufo.js",),
        port=80,
        category=Category.MALWARE,
        kind="malware-attack",
        reporter_name="Netcraft Takedown Service",
    ),
    "xarf-legacy/Netcraft_Example_3.eml": Expect(
        ReportFormat.XARF_LEGACY,
        NETCRAFT,
        (),
        "2015-10-12T06:40:56",
        urls=("http://customer1.tld" + LONG_PATH,),
        domains=("customer1.tld",),
        port=80,
        category=Category.PHISHING,
        kind="phishing",
        reporter_name="Netcraft Takedown Service",
    ),
    "xarf-legacy/Netcraft_Example_4.eml": Expect(
        ReportFormat.XARF_LEGACY,
        NETCRAFT,
        (),
        "2015-10-12T06:40:56",
        urls=("http://john-doe.tld" + LONG_PATH,),
        domains=("john-doe.tld",),
        port=80,
        category=Category.PHISHING,
        kind="phishing",
        reporter_name="Netcraft Takedown Service",
    ),
    "xarf-v4/connection-ddos.json": _v4(
        "192.0.2.155",
        "2025-01-11T09:21:23",
        "ddos@ddos-monitor.example",
        "DDoS Protection Service",
        Category.DENIAL_OF_SERVICE,
        "connection/ddos",
        port=1,
    ),
    "xarf-v4/connection-infected-host.json": _v4(
        "203.0.113.85",
        "2025-01-11T13:42:15",
        "infections@malware-detect.example",
        "Malware Detection Service",
        Category.MALWARE,
        "connection/infected_host",
        port=443,
    ),
    "xarf-v4/connection-login-attack.json": _v4(
        "198.51.100.77",
        "2025-01-11T12:17:20",
        "honeypot@ssh-monitor.example",
        "SSH Honeypot Network",
        NA,
        "connection/login_attack",
        port=45621,
    ),
    "xarf-v4/connection-port-scan.json": _v4(
        "198.51.100.150",
        "2025-01-11T11:26:59",
        "alerts@netsec-monitor.example",
        "Network Security Monitoring",
        NA,
        "connection/port_scan",
        port=54321,
    ),
    "xarf-v4/connection-reconnaissance.json": _v4(
        "192.0.2.99",
        "2025-01-20T16:45:00",
        "security@webhost.example",
        "Web Security Service",
        NA,
        "connection/reconnaissance",
    ),
    "xarf-v4/connection-scraping.json": _v4(
        "192.0.2.150",
        "2025-01-20T14:00:00",
        "abuse@hosting.example",
        "Website Protection Service",
        NA,
        "connection/scraping",
    ),
    "xarf-v4/connection-sql-injection.json": _v4(
        "192.0.2.45",
        "2025-01-20T12:00:00",
        "security@example.com",
        "Web Application Firewall",
        NA,
        "connection/sql_injection",
    ),
    "xarf-v4/connection-vulnerability-scan.json": _v4(
        "203.0.113.77",
        "2025-01-20T09:30:00",
        "noc@example.net",
        "Network Security Monitor",
        NA,
        "connection/vulnerability_scan",
    ),
    "xarf-v4/content-brand-infringement.json": _v4(
        "",
        "2025-01-11T14:15:30",
        "brand-abuse@protection-services.example",
        "Brand Protection Services",
        CR,
        "content/brand_infringement",
        urls=("https://fake-apple-store.example.com/iphone",),
        domains=("fake-apple-store.example.com",),
        ip=False,
    ),
    "xarf-v4/content-csam.json": _v4(
        "198.51.100.42",
        "2025-01-20T10:30:00",
        "safety@example.org",
        "Content Safety Service",
        Category.CSAM,
        "content/csam",
        urls=("https://example.com/illegal-content",),
        domains=("example.com",),
    ),
    "xarf-v4/content-csem.json": _v4(
        "198.51.100.42",
        "2025-01-20T10:30:00",
        "safety@example.org",
        "Content Safety Service",
        Category.CSAM,
        "content/csem",
        urls=("https://example.com/illegal-content",),
        domains=("example.com",),
    ),
    "xarf-v4/content-exposed-data.json": _v4(
        "198.51.100.99",
        "2025-01-20T09:20:00",
        "alerts@breachmonitor.example",
        "Data Breach Monitor",
        V,
        "content/exposed_data",
        urls=("http://exposed-database.example.com:8080/dump.sql",),
        domains=("exposed-database.example.com",),
    ),
    "xarf-v4/content-fraud.json": _v4(
        "",
        "2025-01-11T16:22:45",
        "fraud-reports@antifraud-coalition.example",
        "Anti-Fraud Coalition",
        Category.FRAUD,
        "content/fraud",
        urls=("https://crypto-scam-invest.example.com/guaranteed-returns",),
        domains=("crypto-scam-invest.example.com",),
        ip=False,
    ),
    "xarf-v4/content-malware.json": _v4(
        "192.0.2.75",
        "2025-01-11T09:07:21",
        "malware@malware-research.example",
        "Malware Research Lab",
        Category.MALWARE,
        "content/malware",
        urls=("http://download-center.example.com/setup.exe",),
    ),
    "xarf-v4/content-phishing.json": _v4(
        "203.0.113.45",
        "2025-01-11T15:15:24",
        "takedown@brand-protect.example",
        "Brand Protection Service",
        Category.PHISHING,
        "content/phishing",
        urls=("http://secure-banking-login.example.com/auth",),
    ),
    "xarf-v4/content-remote-compromise.json": _v4(
        "",
        "2025-01-11T18:05:12",
        "compromise-alerts@websec-monitor.example",
        "Website Security Monitor",
        V,
        "content/remote_compromise",
        urls=("https://compromised-blog.example.com/wp-admin/shell.php",),
        domains=("compromised-blog.example.com",),
        ip=False,
    ),
    "xarf-v4/content-suspicious-registration.json": _v4(
        "",
        "2025-01-11T20:30:15",
        "suspicious-domains@domain-intel.example",
        "Domain Intelligence Monitor",
        Category.PHISHING,
        "content/suspicious_registration",
        urls=("https://g00gle-verify.example.com",),
        domains=("g00gle-verify.example.com",),
        ip=False,
    ),
    "xarf-v4/copyright-copyright.json": _v4(
        "198.51.100.75",
        "2025-01-11T11:52:34",
        "copyright@broadcaster.example",
        "Broadcaster Copyright Department",
        CR,
        "copyright/copyright",
        urls=("http://pirate-streams.example.com/show/episode5.mp4",),
    ),
    "xarf-v4/copyright-cyberlocker.json": _v4(
        "",
        "2025-01-11T14:16:41",
        "dmca@content-protection.example",
        "Content Protection Agency",
        CR,
        "copyright/cyberlocker",
        urls=("https://file-sharing.example.com/download/movie2024.mp4",),
        domains=("file-sharing.example.com",),
        ip=False,
    ),
    "xarf-v4/copyright-link-site.json": _v4(
        "",
        "2025-01-11T14:12:10",
        "links@antipiracy-monitor.example",
        "Anti-Piracy Monitoring",
        CR,
        "copyright/link_site",
        urls=("https://links-aggregator.example.net/movie/protected-film-2024",),
        domains=("links-aggregator.example.net",),
        ip=False,
    ),
    "xarf-v4/copyright-p2p.json": _v4(
        "192.0.2.100",
        "2025-01-11T13:44:41",
        "p2p-reports@copyright-monitor.example",
        "P2P Monitoring Service",
        CR,
        "copyright/p2p",
    ),
    "xarf-v4/copyright-ugc-platform.json": _v4(
        "",
        "2025-01-11T08:00:36",
        "takedowns@drm-service.example",
        "Digital Rights Management",
        CR,
        "copyright/ugc_platform",
        urls=("https://video-platform.example.com/watch?v=copyrighted_content",),
        domains=("video-platform.example.com",),
        ip=False,
    ),
    "xarf-v4/copyright-usenet.json": _v4(
        "",
        "2025-01-11T09:12:59",
        "usenet@copyright-watch.example",
        "Usenet Copyright Monitor",
        CR,
        "copyright/usenet",
        domains=("news.usenet-provider.example.com",),
        ip=False,
    ),
    "xarf-v4/infrastructure-botnet.json": _v4(
        "198.51.100.25",
        "2025-01-11T15:00:52",
        "cert@cert-org.example",
        "Example CERT Organization",
        Category.MALWARE,
        "infrastructure/botnet",
    ),
    "xarf-v4/infrastructure-compromised-server.json": _v4(
        "203.0.113.150",
        "2025-01-11T15:57:57",
        "incidents@server-monitor.example",
        "Server Security Monitor",
        V,
        "infrastructure/compromised_server",
        port=80,
    ),
    "xarf-v4/messaging-bulk-messaging.json": _v4(
        "",
        "2025-01-11T14:02:29",
        "reports@email-monitor.example",
        "Bulk Email Monitor",
        SPAM,
        "messaging/bulk_messaging",
        domains=("mail.bulk-sender.example",),
        port=25,
        ip=False,
    ),
    "xarf-v4/messaging-spam.json": _v4(
        "192.168.1.100",
        "2025-01-11T10:59:45",
        "reports@antispam-service.example",
        "Example Anti-Spam Service",
        SPAM,
        "messaging/spam",
        port=25,
    ),
    "xarf-v4/reputation-blocklist.json": _v4(
        "203.0.113.200",
        "2025-01-11T10:51:30",
        "intel@threat-intel.example",
        "Threat Intelligence Consortium",
        Category.MALWARE,
        "reputation/blocklist",
    ),
    "xarf-v4/reputation-threat-intelligence.json": _v4(
        "192.0.2.50",
        "2025-01-11T10:38:41",
        "intel@threat-research.example",
        "Threat Intelligence Provider",
        Category.MALWARE,
        "reputation/threat_intelligence",
    ),
    "xarf-v4/vulnerability-cve.json": _v4(
        "172.16.1.200",
        "2025-01-11T12:49:43",
        "vulns@vuln-scanner.example",
        "Vulnerability Assessment Service",
        V,
        "vulnerability/cve",
        port=8080,
    ),
    "xarf-v4/vulnerability-misconfiguration.json": _v4(
        "192.0.2.75",
        "2025-01-11T11:39:44",
        "scans@security-service.example",
        "Security Scanner Service",
        V,
        "vulnerability/misconfiguration",
    ),
    "xarf-v4/vulnerability-open-service.json": _v4(
        "192.0.2.50",
        "2025-01-11T15:35:37",
        "reports@threat-intel.example",
        "The Shadowserver Foundation",
        V,
        "vulnerability/open_service",
        port=3389,
    ),
}


def test_every_shared_fixture_has_expectations() -> None:
    if not FIXTURES.is_dir():
        if IN_CI:
            pytest.fail(f"the shared fixtures are missing ({FIXTURES}), and CI=true")
        pytest.skip(f"the shared fixtures are not here ({FIXTURES})")
    present = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file()}
    present -= {"README.md"}
    assert present == set(EXPECTED), "add expectations for new fixtures, drop gone ones"


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_fixture_is_read_right(relative: str) -> None:
    expect = EXPECTED[relative]
    report = detect_and_parse(fixture(relative))
    assert report.format is expect.format
    assert report.reporter_email == expect.reporter_email
    assert report.reporter_name == expect.reporter_name
    assert len(report.findings) == expect.findings
    first = report.findings[0]
    assert first.addresses == expect.addresses
    assert first.urls == expect.urls
    assert first.domains == expect.domains
    assert first.event_time == t(expect.event_time)
    assert first.event_time.tzinfo is UTC
    assert first.port == expect.port
    assert first.category is expect.category
    if expect.kind:
        assert first.kind == expect.kind
    if expect.last_address:
        assert report.findings[-1].addresses == (expect.last_address,)
    json.dumps(report.as_json())  # everything parsed is JSON-serialisable


def test_arf_fields_and_unknown_fields_kept() -> None:
    report = detect_and_parse(fixture("arf/AOL_example_1.eml"))
    assert report.fields["arf_version"] == "0.1"  # the draft-era format
    assert report.fields["user_agent"] == "AOL SComp"
    assert report.fields["original"]["message_id"] == "<20160119143236.14076@une.com.co>"
    evidence = report.findings[0].evidence
    assert evidence["redacted-address"] == ["redacted", "redacted@"]  # an unknown field, kept
    assert report.message_id == "<20160119193302.5D0103C910F@correo.domain2.tld>"
    assert report.received_time == t("2016-01-19T19:32:49")
    spamexperts = detect_and_parse(fixture("arf/spamexperts_1.eml"))
    results = spamexperts.findings[0].evidence["authentication-results"]
    assert results == ["test17.example.com; auth=pass smtp.auth=172.16.10.13@example.com"]
    assert spamexperts.findings[0].evidence["original-rcpt-to"] == ["<ashley@example.com>"]


def test_dmca_fixtures_completeness() -> None:
    first = detect_and_parse(fixture("dmca-acns/ip-echelon_sample1.eml"))
    assert first.notice_complete is True
    assert first.missing == ()
    assert first.fields["case_id"] == "314620451"
    assert first.fields["complainant"]["entity"] == "Paramount Pictures Corporation"
    assert first.fields["ask_for_rest"] is False
    assert "Mission: Impossible - Rogue Nation" in first.findings[0].description
    # Warner's notice states authority under penalty of perjury but never that it is accurate.
    eighth = detect_and_parse(fixture("dmca-acns/ip-echelon_sample8.eml"))
    assert eighth.notice_complete is False
    assert eighth.missing == ("accuracy_authority",)
    assert eighth.fields["elements"]["accuracy_authority"]["accuracy"] is False
    assert eighth.fields["ask_for_rest"] is True
    assert eighth.findings[0].description.startswith("Black Mass")


def test_shadowserver_fields() -> None:
    report = detect_and_parse(fixture("shadowserver/2015-01-01-scan_ntp-sample-asn.csv.zip.eml"))
    assert report.fields["report_type"] == "scan_ntp"
    assert report.fields["report_date"] == "2015-01-01"
    assert report.fields["files"] == [
        {
            "file": "2015-01-01-scan_ntp-sample-asn.csv",
            "report": "scan_ntp",
            "rows": 9,
            "skipped": 0,
        }
    ]
    row = report.findings[0].evidence
    assert row["hostname"] == "c-76-22-142-205.hsd1.tn.comcast.net"  # kept, not a domain
    assert report.findings[0].domains == ()
    sinkhole = detect_and_parse(
        fixture("shadowserver/2015-01-01-sinkhole_http_drone-sample-asn.csv.zip.eml")
    )
    assert sinkhole.findings[0].kind == "event4_sinkhole_http"  # the old name, mapped
    assert sinkhole.findings[0].urls == ()  # its url column is the bot's request line


def test_xarf_legacy_yaml_fallback_and_evidence() -> None:
    cleanmx = detect_and_parse(fixture("xarf-legacy/Cleanmx_Example_1.eml"))
    assert cleanmx.fields["yaml_fallback"] is True  # "http: //" is not YAML
    blocklist = detect_and_parse(fixture("xarf-legacy/Blocklistde_Example_1.eml"))
    assert "yaml_fallback" not in blocklist.fields
    assert blocklist.fields["reported_from"] == "abuse-team@blocklist.de"
    assert blocklist.findings[0].evidence["Version"] == "0.2"  # strings stay strings
    assert "POST /profile.php" in blocklist.findings[0].evidence["attachment_text"]


def test_xarf_v4_evidence_payloads_not_copied_and_csam_withheld() -> None:
    phishing = detect_and_parse(fixture("xarf-v4/content-phishing.json"))
    items = phishing.findings[0].evidence["evidence"]
    assert all("payload" not in item for item in items)
    assert items[0]["payload_chars"] > 0
    csam = detect_and_parse(fixture("xarf-v4/content-csam.json"))
    item = csam.findings[0].evidence["evidence"][0]
    assert "payload" not in item
    assert "never" in item["payload_withheld"]
    assert csam.message_id == "b7ca7591-811e-4d40-83d9-dc043c08555d"


# --- formats without shared fixtures: samples written here ---------------------------------


def mail(
    body: str | None = None,
    *,
    sender: str = "Jane Doe <jane@complainant.example>",
    subject: str = "Abuse from your network",
    subtype: str = "plain",
    headers: dict[str, str] | None = None,
) -> email.message.EmailMessage:
    message = email.message.EmailMessage(policy=policy.default)
    message["From"] = sender
    message["To"] = "abuse@provider.example"
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Mar 2026 10:00:00 +0100"
    message["Message-ID"] = "<complaint-1@complainant.example>"
    for name, value in (headers or {}).items():
        message[name] = value
    if body is not None:
        message.set_content(body, subtype=subtype)
    return message


AUTH_FAILURE = b"""\
From: dmarc@receiver.example
To: abuse@provider.example
Subject: FW: Earn money
Date: Thu, 8 Mar 2005 17:40:36 EDT
Message-ID: <433689.81121.example@mta.mail.receiver.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1_13d.2e68ed54"

--part1_13d.2e68ed54
Content-Type: text/plain; charset="US-ASCII"

This is an authentication failure report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.

--part1_13d.2e68ed54
Content-Type: message/feedback-report

Feedback-Type: auth-failure
User-Agent: SomeDKIMFilter/1.0
Version: 1
Original-Mail-From: <randomuser@provider-customer.example>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Auth-Failure: dkim
Authentication-Results: mail.receiver.example; dkim=fail header.d=provider-customer.example
DKIM-Domain: provider-customer.example
Reported-Domain: provider-customer.example

--part1_13d.2e68ed54
Content-Type: text/rfc822-headers

Received: from mailserver.provider-customer.example (mailserver.provider-customer.example
 [198.51.100.23]) by mx.receiver.example with ESMTP id M63d4137594e46;
 Thu, 08 Mar 2005 14:00:00 -0400
From: <randomuser@provider-customer.example>
To: <user@receiver.example>
Subject: Earn money
Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@provider-customer.example>

--part1_13d.2e68ed54--
"""


def test_arf_auth_failure_is_not_spam_and_source_from_received() -> None:
    report = detect_and_parse(AUTH_FAILURE)
    assert report.format is ReportFormat.ARF
    finding = report.findings[0]
    assert finding.kind == "auth-failure"
    assert finding.category is None
    # No Source-IP: the topmost Received header of the reported message names one client.
    assert finding.addresses == ("198.51.100.23",)
    assert report.fields["source_ip_from"] == "received"
    assert finding.domains == ("provider-customer.example",)
    assert finding.evidence["auth-failure"] == "dkim"
    assert finding.event_time == t("2005-03-08T18:00:00")


def test_arf_source_not_derived_when_received_is_ambiguous() -> None:
    ambiguous = AUTH_FAILURE.replace(
        b"[198.51.100.23])", b"[198.51.100.23]) (203.0.113.9)"
    )  # two literals in the from clause: not clearly derivable
    report = detect_and_parse(ambiguous)
    assert report.findings[0].addresses == ()
    assert "source_ip_from" not in report.fields


def test_arf_block_sent_base64_encoded_is_still_read() -> None:
    block = b"Feedback-Type: abuse\nVersion: 1\nSource-IP: 192.0.2.77\n"
    encoded = base64.encodebytes(block)
    raw = AUTH_FAILURE.replace(
        b"Content-Type: message/feedback-report\n\n",
        b"Content-Type: message/feedback-report\nContent-Transfer-Encoding: base64\n\n"
        + encoded
        + b"\n--part1_13d.2e68ed54\nContent-Type: text/plain\n\nthe old block follows\n",
    )
    finding = detect_and_parse(raw).findings[0]
    assert (finding.addresses, finding.kind, finding.category) == (("192.0.2.77",), "abuse", SPAM)


XARF_V3 = {
    "Version": "3.0.0",
    "ReporterInfo": {
        "ReporterOrg": "Example Anti-Spam Service",
        "ReporterOrgDomain": "antispam-service.example",
        "ReporterOrgEmail": "reports@antispam-service.example",
        "ReporterContactEmail": "abuse@antispam-service.example",
        "ReporterContactName": "Abuse Team",
    },
    "Disclosure": True,
    "Report": {
        "ReportClass": "Messaging",
        "ReportType": "spam",
        "Date": "2024-01-15T14:30:25Z",
        "Source": {"IP": "192.168.1.100", "Port": 25, "Type": "ip"},
        "Attachment": [{"ContentType": "message/rfc822", "Data": "UmVjZWl2ZWQ6IA=="}],
        "AdditionalInfo": {"Protocol": "smtp", "SMTPFrom": "marketing@example.com"},
    },
}


def test_xarf_v3_both_spellings() -> None:
    report = detect_and_parse(json.dumps(XARF_V3).encode())
    assert report.format is ReportFormat.XARF_V3
    assert report.reporter_email == "abuse@antispam-service.example"
    assert report.reporter_name == "Abuse Team"
    finding = report.findings[0]
    assert (finding.addresses, finding.port, finding.category) == (("192.168.1.100",), 25, SPAM)
    assert finding.event_time == t("2024-01-15T14:30:25")
    assert finding.evidence["attachments"][0]["payload_chars"] == 16
    flat = {
        "Version": "3",
        "ReporterInfo": {"ReporterOrg": "Honeypot Net", "ReporterOrgEmail": "r@honeypot.example"},
        "Report": {
            "ReportClass": "Activity",
            "ReportType": "Phishing",
            "Date": "2024-01-01T15:30:00Z",
            "Url": "hxxp://bank-login[.]example/secure",
        },
    }
    phishing = detect_and_parse(json.dumps(flat).encode())
    assert phishing.findings[0].urls == ("http://bank-login.example/secure",)
    assert phishing.findings[0].category is Category.PHISHING


def test_xarf_v3_missing_fields_listed() -> None:
    broken = {"Version": "3", "ReporterInfo": {}, "Report": {"ReportType": "spam"}}
    with pytest.raises(MalformedReport) as caught:
        detect_and_parse(json.dumps(broken).encode())
    assert "ReporterInfo.ReporterOrg is missing" in caught.value.problems
    assert "Report.Date is missing" in caught.value.problems
    assert "Report names no source (IP, URL, domain)" in caught.value.problems


def test_xarf_v4_invalid_lists_every_problem() -> None:
    doc = json.loads(fixture("xarf-v4/connection-ddos.json"))
    del doc["protocol"]
    doc["source_port"] = "one"
    with pytest.raises(MalformedReport) as caught:
        detect_and_parse(json.dumps(doc).encode())
    problems = caught.value.problems
    assert "(report): 'protocol' is a required property" in problems
    assert any(p.startswith("source_port:") for p in problems)
    doc = json.loads(fixture("xarf-v4/connection-ddos.json"))
    doc["type"] = "carpet_bombing"
    assert xarf_v4.validate(doc)[0].startswith("type: 'carpet_bombing' is not an XARF v4 type")


def test_xarf_v4_in_a_mail_attachment() -> None:
    message = mail("Please find our XARF report attached.", sender="reports@xarf-sender.example")
    message.add_attachment(
        fixture("xarf-v4/messaging-spam.json"),
        maintype="application",
        subtype="json",
        filename="report.json",
    )
    report = detect_and_parse(message.as_bytes())
    assert report.format is ReportFormat.XARF_V4
    assert report.reporter_email == "reports@antispam-service.example"  # the report's reporter
    assert report.message_id == "<complaint-1@complainant.example>"
    assert report.fields["report_id"] == "02eb480f-8172-431a-9276-c28ba90f694a"


SPAMCOP_BODY = """\
[ SpamCop V5.4.0 ]
This message is brief for your comfort.  Please use links below for details.

Email from 192.0.2.25 / Mon, 11 Mar 2024 09:12:45 -0000
https://www.spamcop.net/sc?id=z7019283746z

Spamvertised web site: http://cheap-pills.example/buy
https://www.spamcop.net/w3m?i=z7019283746z
http://cheap-pills.example/buy is 198.51.100.80; Mon, 11 Mar 2024 09:12:46 -0000

[ Offending message ]
Return-Path: <sales@cheap-pills.example>
Received: from mail.cheap-pills.example ([192.0.2.25]) by mx.victim.example
Subject: Cheap pills
"""


def test_spamcop_plain_report() -> None:
    message = mail(
        SPAMCOP_BODY,
        sender="7019283746@reports.spamcop.net",
        subject="[SpamCop (http://cheap-pills.example/buy) id:7019283746]Cheap pills",
    )
    report = detect_and_parse(message.as_bytes())
    assert report.format is ReportFormat.SPAMCOP
    assert report.reporter_email == "7019283746@reports.spamcop.net"
    assert report.fields["spamcop_id"] == "7019283746"
    sent, site = report.findings
    assert (sent.addresses, sent.kind, sent.category) == (("192.0.2.25",), "spam", SPAM)
    assert sent.event_time == t("2024-03-11T09:12:45")
    assert site.urls == ("http://cheap-pills.example/buy",)
    assert site.addresses == ("198.51.100.80",)
    assert site.domains == ("cheap-pills.example",)
    assert site.kind == "spamvertised"


def test_spamcop_arf_report_is_labelled_spamcop() -> None:
    arf_mail = AUTH_FAILURE.replace(b"From: dmarc@receiver.example", b"From: 1@reports.spamcop.net")
    arf_mail = arf_mail.replace(b"Feedback-Type: auth-failure", b"Feedback-Type: abuse")
    report = detect_and_parse(arf_mail)
    assert report.format is ReportFormat.SPAMCOP
    assert report.findings[0].category is SPAM


def test_spamcop_summary_is_left_to_a_person() -> None:
    summary = mail("Your reports this week: 3", sender="x@reports.spamcop.net")
    assert detect_and_parse(summary.as_bytes()).format is ReportFormat.HUMAN


def test_human_plain_text_complaint_with_defanged_resources() -> None:
    body = (
        "Hello,\n\nyour customer at 203.0.113.45 (and 2001:db8:85a3::8a2e:370:7334) hosts a\n"
        "phishing page: hxxps://paypa1-login[.]example/secure?id=1 and the same kit on\n"
        "bad-kit[.]example. Logs at 10:15:22 UTC.\n\nRegards, Jane (jane@complainant.example)\n"
    )
    report = detect_and_parse(mail(body).as_bytes())
    assert report.format is ReportFormat.HUMAN
    assert (report.reporter_name, report.reporter_email) == ("Jane Doe", "jane@complainant.example")
    finding = report.findings[0]
    assert finding.addresses == ("203.0.113.45", "2001:db8:85a3::8a2e:370:7334")
    assert finding.urls == ("https://paypa1-login.example/secure?id=1",)
    assert finding.domains == ("bad-kit.example",)  # not the complainant's own mail domain
    assert finding.evidence["emails"] == ["jane@complainant.example"]
    assert finding.category is None
    assert report.received_time == t("2026-03-02T09:00:00")


def test_human_html_complaint_is_made_safe_text() -> None:
    html = (
        "<html><head><title>x</title><script>alert('head')</script></head><body>"
        '<p onclick="steal()">Phishing at <a href="http://phish.example/login">this page</a>'
        " on 198.51.100.7</p><script>document.location='http://evil.example/'</script>"
        '<style>p{}</style><a href="javascript:alert(1)">click</a>'
        '<iframe src="http://evil.example/frame">inner</iframe>&lt;b&gt; &amp; done</body></html>'
    )
    report = detect_and_parse(mail(html, subtype="html").as_bytes())
    finding = report.findings[0]
    assert report.fields["html"] is True
    for bad in (
        "<script",
        "alert(",
        "steal()",
        "javascript:",
        "evil.example",
        "<iframe",
        "onclick",
    ):
        assert bad not in finding.description
    assert "<b> & done" in finding.description  # entities decoded as text, never as markup
    assert finding.urls == ("http://phish.example/login",)
    assert finding.addresses == ("198.51.100.7",)


def test_human_forwarded_spam_as_attachment() -> None:
    spam = mail("Buy now at http://spam-shop.example/deal", sender="x@spam-shop.example")
    del spam["Received"]
    spam["Received"] = "from smtp.spam-shop.example (smtp.spam-shop.example [192.0.2.99]) by mx"
    complaint = mail("Please stop this spam, see attached.")
    complaint.add_attachment(spam)
    report = detect_and_parse(complaint.as_bytes())
    assert report.format is ReportFormat.HUMAN
    finding = report.findings[0]
    assert finding.addresses == ("192.0.2.99",)
    assert finding.urls == ("http://spam-shop.example/deal",)


def test_complaint_without_resources_is_still_one_finding() -> None:
    report = detect_and_parse(mail("Your customer keeps sending me rude messages.").as_bytes())
    assert len(report.findings) == 1
    assert report.findings[0].addresses == report.findings[0].urls == ()


def test_json_that_is_no_xarf_is_read_as_text() -> None:
    report = detect_and_parse(b'{"complaint": "spam from 192.0.2.1"}')
    assert report.format is ReportFormat.HUMAN
    assert report.findings[0].addresses == ("192.0.2.1",)


# --- DMCA text notices and their completeness ----------------------------------------------

COMPLETE_NOTICE = """\
Dear Abuse Team,

This is a notice of claimed infringement under the Digital Millennium Copyright Act.

I am the owner of the copyrighted work: my photograph "Sunset over Kyoto" (2019).
The infringing material is located at:
https://stolen-photos.example/gallery/kyoto.jpg

Contact: Jane Doe, 1 Main Street, Springfield; phone +1 555 010 2000; jane@photos.example

I have a good faith belief that use of the material in the manner complained of is not
authorized by the copyright owner, its agent, or the law. The information in this
notification is accurate, and under penalty of perjury, I am authorized to act on behalf of
the owner of an exclusive right that is allegedly infringed.

Sincerely,
Jane Doe
"""


def test_dmca_text_complete_notice() -> None:
    report = detect_and_parse(mail(COMPLETE_NOTICE, subject="DMCA notice").as_bytes())
    assert report.format is ReportFormat.DMCA_TEXT
    assert report.notice_complete is True
    assert report.missing == ()
    assert report.fields["ask_for_rest"] is False
    finding = report.findings[0]
    assert finding.urls == ("https://stolen-photos.example/gallery/kyoto.jpg",)
    assert finding.category is Category.COPYRIGHT
    assert report.fields["elements"]["signature"] == "Jane Doe"


def test_dmca_incomplete_notice_with_work_material_contact_asks_for_the_rest() -> None:
    text = (
        "DMCA takedown: my photograph was copied to https://stolen-photos.example/kyoto.jpg\n"
        "Please remove the infringing copy.\n"
    )
    report = detect_and_parse(mail(text).as_bytes())
    assert report.format is ReportFormat.DMCA_TEXT
    assert report.notice_complete is False
    assert report.missing == ("signature", "good_faith", "accuracy_authority")
    assert report.fields["ask_for_rest"] is True  # 512(c)(3)(B)(ii)


def test_dmca_notice_without_material_does_not_ask_for_the_rest() -> None:
    text = "DMCA notice: someone on your network copies my songs. Stop them.\n"
    report = detect_and_parse(mail(text, sender="no-reply@agent.example").as_bytes())
    assert set(report.missing) >= {"material", "contact"}
    assert report.fields["ask_for_rest"] is False


@pytest.mark.parametrize(
    ("statement", "missing"),
    [
        ("under penalty of perjury, I am authorized to act. This notice is accurate.", ()),
        ("under penalty of perjury, I am authorized to act.", ("accuracy_authority",)),
        ("This notice is accurate and I am authorized to act.", ("accuracy_authority",)),
    ],
)
def test_dmca_accuracy_authority_needs_all_three(statement: str, missing: tuple[str, ...]) -> None:
    base = COMPLETE_NOTICE.split("I have a good faith")[0]
    text = (
        base
        + "I have a good faith belief the use is not authorized. "
        + statement
        + "\n\n/s/ Jane Doe\n"
    )
    found, details = dmca.check_notice(text)
    assert found == missing
    assert details["signature"] == "/s/ signature"


# --- Shadowserver: names, plain CSV, limits -------------------------------------------------


def test_shadowserver_names_old_and_new_alike() -> None:
    assert shadowserver.canonical_report("botnet_drone") == "event4_sinkhole"
    assert shadowserver.canonical_report("event6_sinkhole") == "event4_sinkhole"
    assert shadowserver.canonical_report("scan6_ntp") == "scan_ntp"
    assert shadowserver.canonical_report("dns_openresolver") == "scan_dns"
    assert shadowserver.category_of("event4_sinkhole") is Category.MALWARE
    assert shadowserver.category_of("scan_rdp") is Category.VULNERABLE_SERVICE
    assert shadowserver.category_of("event4_honeypot_brute_force") is Category.NETWORK_ABUSE
    assert shadowserver.category_of("event4_honeypot_ddos_amp") is None  # lists victims


def shadowserver_mail(
    name: str, payload: bytes, maintype: str = "application", subtype: str = "zip"
) -> bytes:
    message = mail(
        "Shadowserver report attached.",
        sender="Shadowserver <autoreports@shadowserver.org>",
        subject="[SAMPLE] Shadowserver report",
    )
    message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


CSV_HEADER = b'"timestamp","src_ip","src_port","dst_ip","infection","http_url"\n'


def test_shadowserver_plain_csv_new_names() -> None:
    rows = CSV_HEADER + b'"2023-05-02T10:00:00Z","198.51.100.9","4433","192.0.2.1","andromeda",""\n'
    rows += b'"2023-05-02 10:00:05","not-an-ip","1","192.0.2.1","andromeda",""\n'
    raw = shadowserver_mail("2023-05-02-event4_sinkhole-region-asn.csv", rows, "text", "csv")
    report = detect_and_parse(raw)
    assert report.format is ReportFormat.SHADOWSERVER
    (finding,) = report.findings
    assert finding.addresses == ("198.51.100.9",)
    assert (finding.port, finding.kind, finding.category) == (
        4433,
        "event4_sinkhole",
        Category.MALWARE,
    )
    assert finding.event_time == t("2023-05-02T10:00:00")
    assert report.fields["files"][0]["skipped"] == 1


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_bomb_is_refused() -> None:
    bomb = zipped({"2024-01-01-scan_ntp-x.csv": CSV_HEADER + b"0" * (32 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded, match="compression ratio"):
        detect_and_parse(shadowserver_mail("2024-01-01-scan_ntp-x.csv.zip", bomb))


def test_zip_limits_on_entries_total_size_and_rows() -> None:
    many = zipped({f"{i}.csv": CSV_HEADER for i in range(40)})
    with pytest.raises(LimitExceeded, match="entries"):
        detect_and_parse(shadowserver_mail("2024-01-01-scan_ntp-x.csv.zip", many))
    raw = fixture("shadowserver/2015-01-01-scan_ntp-sample-asn.csv.zip.eml")
    with pytest.raises(LimitExceeded, match="at most 1000"):
        detect_and_parse(raw, Limits(max_zip_bytes=1000))
    with pytest.raises(LimitExceeded, match="more than 3 rows"):
        detect_and_parse(raw, Limits(max_rows=3))


def test_csv_with_a_10_mb_cell_is_refused() -> None:
    cell = b"A" * (10 * 1024 * 1024)
    row = b'"2024-01-01 00:00:00","192.0.2.1","1","192.0.2.2","' + cell + b'",""\n'
    raw = (
        b"From: autoreports@shadowserver.org\nSubject: Shadowserver event4_sinkhole Report\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/csv\nContent-Transfer-Encoding: 8bit\n"
        b"Content-Disposition: attachment; filename=2024-01-01-event4_sinkhole-x.csv\n\n"
        + CSV_HEADER
        + row
        + b"--b--\n"
    )
    with pytest.raises(LimitExceeded, match="cell"):
        detect_and_parse(raw)


def test_broken_and_truncated_archives_are_malformed() -> None:
    raw = fixture("shadowserver/2015-01-01-scan_ntp-sample-asn.csv.zip.eml")
    start = raw.index(b"UEsDB")
    broken = raw[: start + 200] + b"!!!!####" * 40 + raw[start + 520 :]
    with pytest.raises(MalformedReport):
        detect_and_parse(broken)
    with pytest.raises(MalformedReport):
        detect_and_parse(raw[: start + 400])  # cut in the middle of the attachment


# --- hostile input ---------------------------------------------------------------------------


def test_input_larger_than_the_limit() -> None:
    with pytest.raises(LimitExceeded):
        detect_and_parse(b"x" * 2000, Limits(max_message_bytes=1000))


def test_empty_and_binary_input() -> None:
    with pytest.raises(MalformedReport):
        detect_and_parse(b"  \r\n ")
    with pytest.raises(MalformedReport, match="neither an e-mail message nor text"):
        detect_and_parse(bytes(range(256)) * 20)


def test_truncated_message_is_a_result_or_a_typed_error() -> None:
    for relative in ("arf/Comcast_example_1.eml", "dmca-acns/ip-echelon_sample1.eml"):
        raw = fixture(relative)
        for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 100):
            try:
                result = detect_and_parse(raw[:cut])
            except ParseError:
                continue
            assert isinstance(result, ParsedReport)


def test_deep_mime_nesting_is_a_limit() -> None:
    inner: email.message.EmailMessage = mail("bottom")
    for _ in range(40):
        outer = mail(None)
        outer.make_mixed()
        outer.attach(inner)
        inner = outer
    with pytest.raises(LimitExceeded, match="nest"):
        detect_and_parse(inner.as_bytes())


def test_deep_json_is_malformed() -> None:
    with pytest.raises(MalformedReport, match="nests too deeply"):
        detect_and_parse(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def test_acns_with_entities_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<Infringement xmlns="http://www.acns.net/ACNS"><Case><ID>&lol2;</ID></Case></Infringement>'
    )
    with pytest.raises(MalformedReport, match="DTD"):
        detect_and_parse(mail(bomb, subject="Notice of Claimed Infringement").as_bytes())


def test_yaml_alias_bomb_in_xarf_is_a_limit() -> None:
    lines = ["---", "Report-Type: spam", "Source: 192.0.2.1", "a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        lines.append(
            f"{chr(97 + level)}: &{chr(97 + level)} "
            + "["
            + ", ".join([f"*{chr(96 + level)}"] * 9)
            + "]"
        )
    message = mail("X-ARF report", headers={"X-XARF": "PLAIN"})
    message.add_attachment("\n".join(lines), filename="report.txt")
    with pytest.raises(LimitExceeded, match="values"):
        detect_and_parse(message.as_bytes())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(raw: bytes) -> None:
    try:
        result = detect_and_parse(raw)
    except ParseError:
        return
    assert isinstance(result, ParsedReport)


_MAILISH = st.lists(
    st.sampled_from(
        [
            "From: a@b.example\n",
            'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\n',
            "\n--b\n",
            "Content-Type: message/feedback-report\n\n",
            "Feedback-Type: abuse\n",
            "Source-IP: 192.0.2.1\n",
            "--b--\n",
            "X-XARF: PLAIN\n",
            'Content-Type: multipart/mixed; boundary="b"\n',
            "Content-Disposition: attachment; filename=report.txt\n",
            "---\nReport-Type: spam\nSource: 192.0.2.1\n",
            "Content-Type: application/json\n\n",
            '{"xarf_version": "4.0.0"}\n',
            "DMCA\n",
            '<Infringement xmlns="http://www.acns.net/ACNS"><Source>',
            "</Infringement>\n",
            "Content-Transfer-Encoding: base64\n\n",
            "UEsDBBQAAAAIAA==\n",
            "|ip|url|\n|1|2|\n",
            "filename=2024-01-01-scan_x-y.csv.zip\n",
            "<html><script>x</script>",
            "\x00\xff",
            "Email from 192.0.2.1 / now\n[ Offending message ]\n",
            "hxxp://a[.]b/c\n",
        ]
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MAILISH)
def test_every_parser_survives_mail_shaped_junk(pieces: list[str]) -> None:
    raw = "".join(pieces).encode("utf-8", errors="surrogateescape")
    message = _mail.parse_message(raw)
    for module in PARSERS:
        if module.recognise(message, raw):
            with contextlib.suppress(ParseError):
                module.parse(message, raw, Limits())


def _mutations() -> st.SearchStrategy[tuple[str, int, int, bytes]]:
    names = sorted(k for k in EXPECTED if not k.endswith(".json"))[::3]
    return st.tuples(
        st.sampled_from(names),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=200),
        st.binary(max_size=20),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_fixtures_never_crash(mutation: tuple[str, int, int, bytes]) -> None:
    name, at, cut, insert = mutation
    raw = fixture(name)
    at %= len(raw)
    changed = raw[:at] + insert + raw[at + cut :]
    message = _mail.parse_message(changed)
    for module in PARSERS:
        if module.recognise(message, changed):
            with contextlib.suppress(ParseError):
                module.parse(message, changed, Limits())


# --- helpers and the public surface --------------------------------------------------------


def test_refang_and_extraction() -> None:
    assert refang("hxxps://a[.]b(.)c{.}d[dot]e[:]8080") == "https://a.b.c.d.e:8080"
    addresses, urls, domains, emails = resources(
        "see http://[2001:db8::1]/x, 10.0.0.1. and host.example.com; index.php; me@mail.example"
    )
    assert urls == ["http://[2001:db8::1]/x"]
    assert addresses == ["10.0.0.1"]
    assert domains == ["host.example.com"]
    assert emails == ["me@mail.example"]
    assert html_to_text("<p>a</p><script>b</script><p>c &amp; d</p>") == "a\n\nc & d"


def test_public_api() -> None:
    assert sorted(formats.__all__) == sorted(
        [
            "PARSERS",
            "Finding",
            "FormatParser",
            "LimitExceeded",
            "Limits",
            "MalformedReport",
            "NotThisFormat",
            "ParseError",
            "ParsedReport",
            "ReportFormat",
            "detect_and_parse",
        ]
    )
    for name in formats.__all__:
        assert hasattr(formats, name)
    assert PARSERS[-1].__name__.endswith(".human")  # the fallback is asked last
    assert {m.__name__.rsplit(".", 1)[-1] for m in PARSERS} >= {"arf", "xarf_v4", "dmca"}
    for module in PARSERS:
        assert callable(module.recognise)
        assert callable(module.parse)
