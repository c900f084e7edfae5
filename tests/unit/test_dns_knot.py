"""The pure parts of the Knot data plane: knot.conf, the zone files, the statistics knotc
prints, the secondaries' addresses. knotd itself is in tests/e2e/test_dns_knot.py."""

from __future__ import annotations

from pathlib import Path

import dns.zone
import pytest

from abusedesk.dns.knot import (
    KnotPaths,
    parse_zone_stats,
    render_config,
    zone_file_name,
    zone_text,
)
from abusedesk.dns.plane import ZoneCounters
from abusedesk.dns.settings import DnsSettings, Secondary, TsigKey

PATHS = KnotPaths(Path("/srv/abusedesk/knot"))
KEY = TsigKey(name="transfer.provider.test.", secret="c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0")


def test_zone_stats_become_counters_per_zone() -> None:
    text = (
        "[example.test.] mod-stats.response-code[NOERROR] = 5\n"
        "[example.test.] mod-stats.response-code[NXDOMAIN] = 3\n"
        "[example.test.] mod-stats.response-code[BADKEY] = 1\n"
        "[example.test.] mod-stats.query-type[other] = 1\n"
        "[example.test.] mod-stats.query-type[A] = 6\n"
        "[example.test.] mod-stats.query-type[AAAA] = 1\n"
        "[Other.Test.] mod-stats.query-type[MX] = 2\n"
        "garbage that knotc never prints\n"
    )
    assert parse_zone_stats(text) == {
        "example.test.": ZoneCounters(
            queries=8, nxdomain=3, by_type={"OTHER": 1, "A": 6, "AAAA": 1}
        ),
        "other.test.": ZoneCounters(queries=2, nxdomain=0, by_type={"MX": 2}),
    }


def test_without_query_types_the_responses_are_the_queries() -> None:
    text = (
        "[example.test.] mod-stats.response-code[NOERROR] = 5\n"
        "[example.test.] mod-stats.response-code[NXDOMAIN] = 3\n"
        "[example.test.] mod-stats.response-code[BADKEY] = 1\n"
        "[other.test.] mod-stats.response-code[NOERROR] = 2\n"
    )
    assert parse_zone_stats(text) == {
        "example.test.": ZoneCounters(queries=9, nxdomain=3, by_type={}),
        "other.test.": ZoneCounters(queries=2, nxdomain=0, by_type={}),
    }


def test_query_types_are_counted_only_when_asked() -> None:
    plain = render_config(DnsSettings(), PATHS, 5353, ["a.test."])
    assert "    query-type: off\n" in plain
    assert "    response-code: on\n" in plain
    asked = DnsSettings(knot={"count_query_types": True})
    assert "    query-type: on\n" in render_config(asked, PATHS, 5353, ["a.test."])


def test_config_lists_the_zones_with_the_statistics_module() -> None:
    text = render_config(DnsSettings(), PATHS, 5353, ["b.test.", "a.test."])
    assert "    listen: 127.0.0.1@5353\n" in text
    assert '    rundir: "/srv/abusedesk/knot/run"\n' in text
    assert text.index("domain: a.test.") < text.index("domain: b.test.")
    assert text.count("module: mod-stats/abusedesk") == 2
    assert "acl:" not in text  # no secondaries: nobody may transfer
    assert "notify:" not in text
    bare = render_config(DnsSettings(), PATHS, 5353, ["a.test."], accounting=False)
    assert "mod-stats" not in bare


def test_config_lets_secondaries_transfer_with_the_key_and_notifies_them() -> None:
    settings = DnsSettings(secondaries=["192.0.2.53", "[2001:db8::53]:5300"], tsig=KEY)
    text = render_config(settings, PATHS, 53, ["a.test."])
    assert "    address: 192.0.2.53@53\n" in text
    assert "    address: 2001:db8::53@5300\n" in text
    assert "    address: [192.0.2.53, 2001:db8::53]\n    action: transfer\n" in text
    assert text.count(f"key: {KEY.name}") == 3  # two remotes, the ACL
    assert "    notify: [secondary-0, secondary-1]\n" in text


@pytest.mark.parametrize(
    "settings",
    [
        DnsSettings(tsig=KEY.model_copy(update={"secret": "not base64\n  - id: x"})),
        DnsSettings(tsig=KEY.model_copy(update={"algorithm": "hmac-sha999"})),
    ],
)
def test_config_refuses_what_knot_conf_cannot_hold(settings: DnsSettings) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        render_config(settings, PATHS, 53, [])


@pytest.mark.parametrize("fields", [{"host": "localhost"}, {"secondaries": ["ns.example.test"]}])
def test_the_settings_refuse_names_where_addresses_are_needed(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        DnsSettings(**fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", Secondary("192.0.2.1", 53)),
        ("192.0.2.1@5300", Secondary("192.0.2.1", 5300)),
        ("192.0.2.1:5300", Secondary("192.0.2.1", 5300)),
        ("2001:db8::1", Secondary("2001:db8::1", 53)),
        ("[2001:db8::1]:5300", Secondary("2001:db8::1", 5300)),
        ("2001:DB8::1@5300", Secondary("2001:db8::1", 5300)),
    ],
)
def test_secondary_addresses(text: str, expected: Secondary) -> None:
    assert Secondary.parse(text) == expected


def test_zone_files_start_with_their_origin() -> None:
    zone = dns.zone.from_text(
        "@ 300 SOA ns1 hostmaster 1 3600 600 1209600 300\n@ 300 NS ns1\nns1 300 A 192.0.2.1\n",
        "a.test.",
    )
    text = zone_text("a.test.", zone)
    assert text.startswith("$ORIGIN a.test.\n")
    assert dns.zone.from_text(text, "a.test.") == zone
    assert zone_file_name("a.test.") == "a.test.zone"
    with pytest.raises(ValueError, match="origin"):
        zone_text("b.test.", zone)
    with pytest.raises(ValueError, match="host name"):
        zone_file_name("../etc.")
