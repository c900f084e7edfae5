"""The built-in server as its own process (``python -m abusedesk.dns.server``), asked by the
tools operators use: kdig (required in CI), dig, and dnsviz's probe and grok (optional)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
TSIG = f"hmac-sha256:transfer.example.com.:{SECRET}"

ZONE = """$TTL 300
@ SOA ns1.example.com. hostmaster.example.com. 2026030201 3600 600 864000 60
@ NS ns1.example.com.
ns1 A 127.0.0.1
@ MX 10 mail
mail A 192.0.2.25
www CNAME web
web A 192.0.2.80
web AAAA 2001:db8::80
*.wild TXT "wildcard"
sub NS ns.sub
ns.sub A 192.0.2.53
big TXT {big}
big TXT {big2}
""".format(
    big=" ".join(f'"{c * 200}"' for c in "abc"), big2=" ".join(f'"{c * 200}"' for c in "def")
)


def tool(name: str, package: str, required: bool) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI and required:
            pytest.fail(f"CI=true and {name} is missing (.ci/run installs {package})")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The server's port; it serves example.com. from a zone file, 127.0.0.1 may transfer."""
    zone_file = tmp_path_factory.mktemp("dns") / "example.com.zone"
    zone_file.write_text(ZONE)
    command = [
        sys.executable,
        "-m",
        "abusedesk.dns.server",
        "--zone-file",
        str(zone_file),
        "--origin",
        "example.com.",
        "--port",
        "0",
        "--secondary",
        "127.0.0.1:9",  # NOTIFY goes to the discard port; transfers are allowed from here
        "--tsig",
        TSIG,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until it answers, or exits
        assert line.startswith("listening on "), f"the server did not start: {line!r}"
        yield int(line.split()[-1])
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0  # SIGTERM: a clean stop
        if process.stdout is not None:
            process.stdout.close()


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def kdig(port: int, *args: str) -> str:
    return run([tool("kdig", "knot-dnsutils", required=True), "@127.0.0.1", "-p", str(port), *args])


def test_kdig_positive_answer(server: int) -> None:
    out = kdig(server, "+norec", "www.example.com", "A")
    assert "status: NOERROR" in out
    assert "qr aa;" in out.lower().replace("flags: ", "")
    assert re.search(r"^www\.example\.com\.\s+300\s+IN\s+CNAME\s+web\.example\.com\.$", out, re.M)
    assert "192.0.2.80" in out


def test_kdig_nxdomain_and_nodata(server: int) -> None:
    nx = kdig(server, "+norec", "nope.example.com", "A")
    assert "status: NXDOMAIN" in nx
    assert "SOA" in nx
    nodata = kdig(server, "+norec", "web.example.com", "TXT")
    assert "status: NOERROR" in nodata
    assert "ANSWER: 0" in nodata
    assert "AUTHORITY: 1" in nodata


def test_kdig_referral_wildcard_and_refused(server: int) -> None:
    referral = kdig(server, "+norec", "x.sub.example.com", "A")
    assert "AUTHORITY: 1" in referral
    assert " aa" not in referral.split("Flags:")[1].split(";")[0]
    assert "192.0.2.53" in referral  # glue
    assert '"wildcard"' in kdig(server, "+norec", "anything.wild.example.com", "TXT")
    assert "status: REFUSED" in kdig(server, "+norec", "example.org", "A")


def test_kdig_truncation_and_tcp(server: int) -> None:
    udp = kdig(server, "+norec", "+notcp", "+bufsize=512", "big.example.com", "TXT")
    assert "tc" in udp.split("Flags:")[1].split(";")[0]
    tcp = kdig(server, "+norec", "+tcp", "big.example.com", "TXT")
    assert "ANSWER: 2" in tcp


def test_kdig_axfr_with_tsig(server: int) -> None:
    out = kdig(server, "-y", TSIG, "example.com", "AXFR")
    assert out.count("\tSOA\t") == 2  # first and last
    assert "192.0.2.80" in out
    assert "Transfer failed" not in out
    unsigned = kdig(server, "example.com", "AXFR")
    assert "REFUSED" in unsigned


def test_dig_retries_over_tcp_after_truncation(server: int) -> None:
    dig = tool("dig", "bind9-dnsutils", required=False)
    out = run(
        [dig, "@127.0.0.1", "-p", str(server), "+norec", "+bufsize=512", "big.example.com", "TXT"]
    )
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 2" in out


def test_dnsviz_finds_no_errors(server: int, tmp_path: Path) -> None:
    dnsviz = tool("dnsviz", "dnsviz", required=False)
    probe = subprocess.run(
        [
            dnsviz,
            "probe",
            "-A",
            "-x",
            f"example.com+:ns1.example.com=127.0.0.1:{server}",
            "example.com",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    grok = subprocess.run(
        [dnsviz, "grok"], input=probe.stdout, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(grok.stdout)
    assert found["example.com."]["status"] == "NOERROR"
    problems: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("errors", "warnings"):
                    problems.append(f"{path}/{key}: {value}")
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(found, "")
    assert problems == []
