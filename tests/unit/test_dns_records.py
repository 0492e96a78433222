"""Expected DNS records (pure): names, values, TXT splitting, SPF merging, IDNA, rendering."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from courriel.dns.records import (
    DEFAULT_SPF,
    DkimPublicKey,
    expected,
    merge_spf,
    quote_txt,
    render_table,
    render_zone,
    split_txt,
    to_a_label,
)

TOKEN = "tok3n-abcdefgh"
# A real RSA-4096 SubjectPublicKeyInfo (generating one takes seconds).
RSA_4096_PUBLIC_KEY = (
    "MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAo3/UbhxYK6wi3IKaefPuzLJAgk7oZc+gf3okGYrM3mzI/0ieBKwN0+IC"
    "OqVXWS1wftp26vHrExJaPDOCzhJSRtxSPS8XlzT95jeT7ncows9fGyQXrc3Zd8rYbt+wgVWVEeCEvvs4S7B4T/ihlUP0N60UNj0g"
    "pm8gUF0ETHejQLct7SGfDDneHzBhRtuZ/HowVesQEsj/dKVZxVprIjaKX3TrB4Y9juTk1IrRP+izK0STu2SQAaVSPHd5XpbJSBDb"
    "EpcKd8NCy5Xz7ZFYpvn8mIiOOhVa4YR29vs6fERApjuO+6omUXhtUodYAvXtkdjSPq/eZs+bUAaiik5divVPRXfbleAYn7l8Xjsb"
    "SAjOPr+WneRq/L1REuoY7hMcnc0VYFuZZjXBEFo6bXN2YkhV5ne8sS+vlDmei3BmBF/U/rKti7edxiXi6osYm0jrS8v+ZNAcNtCy"
    "0qNCvkeJ7Osa+WhqApK1a7f0c1mDOnj24j21vyWHxwH/9Tt2ixtOxTrYFT41ztgu6fY9b2HKOXQabsY4Yhqt5wzLA7toDOtkzV4g"
    "PVxXPbuwx8mokTzeu0rfgqkPYnb7q6HD+xwc8A80E/6xL2zt1NFCSxzQH4MBItRjb9sy/2ZHZDa4SQNkg4xlisEjjGnaFBB06re5"
    "/0pp4FsMCFwbbduMfgyBjle/5pUCAwEAAQ=="
)


def rsa_public_key(bits: int) -> str:
    if bits == 4096:
        der = base64.b64decode(RSA_4096_PUBLIC_KEY)
        assert serialization.load_der_public_key(der).key_size == 4096
        return RSA_4096_PUBLIC_KEY
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def ed25519_public_key() -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def by_name(records, rtype, name):
    found = [r for r in records if r.rtype == rtype and r.name == name]
    assert len(found) == 1, (rtype, name, found)
    return found[0]


@pytest.mark.parametrize("domain", ["example.com", "Example.ORG.", "mail-test.example.co.uk"])
def test_basic_records_for_several_domains(domain):
    records = expected("mx.host.example", domain, TOKEN)
    apex = domain.lower().rstrip(".") + "."
    assert by_name(records, "MX", apex).value == "10 mx.host.example."
    txt = [r.value for r in records if r.rtype == "TXT" and r.name == apex]
    assert sorted(txt) == sorted([f"courriel-verification={TOKEN}", DEFAULT_SPF])
    assert by_name(records, "TXT", f"_dmarc.{apex}").value == "v=DMARC1; p=quarantine"
    assert by_name(records, "SRV", f"_imaps._tcp.{apex}").value == "0 1 993 mx.host.example."
    assert by_name(records, "SRV", f"_submission._tcp.{apex}").value == "0 1 587 mx.host.example."
    assert by_name(records, "SRV", f"_submissions._tcp.{apex}").value == "0 1 465 mx.host.example."
    assert by_name(records, "CNAME", f"autoconfig.{apex}").value == "mx.host.example."
    assert by_name(records, "CNAME", f"autodiscover.{apex}").value == "mx.host.example."
    assert all(r.purpose for r in records)
    assert by_name(records, "MX", apex).relative_name(domain) == "@"
    assert by_name(records, "TXT", f"_dmarc.{apex}").relative_name(domain) == "_dmarc"
    assert not [r for r in records if "_mta-sts" in r.name or "_smtp._tls" in r.name]


def test_idna_domain_is_published_as_a_label():
    records = expected("mail.bücher.example", "Bücher.example", TOKEN, dmarc_rua="dmarc@bücher.example")
    assert to_a_label("Bücher.example") == "xn--bcher-kva.example"
    assert by_name(records, "MX", "xn--bcher-kva.example.").value == "10 mail.xn--bcher-kva.example."
    assert all(r.name.isascii() and r.name.endswith("xn--bcher-kva.example.") for r in records)
    assert "mail.xn--bcher-kva.example." in render_zone(records)


@pytest.mark.parametrize("bad", ["", "no_dot", "-bad-.example", "a..example", "x" * 64 + ".example"])
def test_invalid_domains_are_refused(bad):
    with pytest.raises(ValueError):
        expected("mx.host.example", bad, TOKEN)


def test_bad_token_and_selector_are_refused():
    with pytest.raises(ValueError):
        expected("mx.host.example", "example.com", 'x" ; evil')
    with pytest.raises(ValueError):
        expected("mx.host.example", "example.com", TOKEN, [DkimPublicKey("bad selector", "rsa-sha256", "AAAA")])
    with pytest.raises(ValueError):
        expected("mx.host.example", "example.com", TOKEN, [DkimPublicKey("s1", "rsa-sha256", "not base64!")])


@pytest.mark.parametrize("bits", [2048, 4096])
def test_long_rsa_dkim_key_is_split_into_255_octet_strings(bits):
    public_key = rsa_public_key(bits)
    records = expected("mx.host.example", "example.com", TOKEN, [DkimPublicKey("s2026", "rsa-sha256", public_key)])
    record = by_name(records, "TXT", "s2026._domainkey.example.com.")
    assert record.value == f"v=DKIM1; k=rsa; p={public_key}"
    assert len(record.strings) >= 2
    assert all(len(s.encode()) <= 255 for s in record.strings)
    assert "".join(record.strings) == record.value
    assert record.value.split("p=", 1)[1] == public_key
    zone_line = next(line for line in render_zone(records).splitlines() if line.startswith("s2026._domainkey"))
    assert zone_line.count('"') == 2 * len(record.strings)


def test_ed25519_and_rsa_keys_side_by_side():
    ed = ed25519_public_key()
    keys = [DkimPublicKey("rsa1", "rsa-sha256", rsa_public_key(2048)), DkimPublicKey("ed1", "ed25519-sha256", ed)]
    records = expected("mx.host.example", "example.com", TOKEN, keys)
    ed_record = by_name(records, "TXT", "ed1._domainkey.example.com.")
    assert ed_record.value == f"v=DKIM1; k=ed25519; p={ed}"
    assert ed_record.strings == (ed_record.value,)
    assert by_name(records, "TXT", "rsa1._domainkey.example.com.").value.startswith("v=DKIM1; k=rsa; p=MII")


def test_split_txt_never_cuts_utf8_and_round_trips():
    value = "é" * 300 + "x" * 10
    pieces = split_txt(value)
    assert "".join(pieces) == value
    assert all(len(p.encode()) <= 255 for p in pieces)
    assert split_txt("") == ("",)
    assert quote_txt('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize(
    ("existing", "merged"),
    [
        (None, "v=spf1 mx -all"),
        ("v=spf1 include:_spf.provider.example ~all", "v=spf1 mx include:_spf.provider.example ~all"),
        ("v=spf1 mx -all", "v=spf1 mx -all"),
        ("v=spf1 +mx/24 ip4:192.0.2.1 -all", "v=spf1 +mx/24 ip4:192.0.2.1 -all"),
        ("v=spf1 mx:other.example -all", "v=spf1 mx mx:other.example -all"),
        ("v=spf1 redirect=_spf.example.net", "v=spf1 mx redirect=_spf.example.net"),
        ("not an spf record", "v=spf1 mx -all"),
        ("v=spf10 -all", "v=spf1 mx -all"),
    ],
)
def test_spf_merge(existing, merged):
    assert merge_spf(existing) == merged


def test_existing_spf_gives_one_merged_record():
    records = expected("mx.host.example", "example.com", TOKEN, existing_spf="v=spf1 include:x.example -all")
    spf = [r for r in records if r.rtype == "TXT" and r.value.startswith("v=spf1")]
    assert [r.value for r in spf] == ["v=spf1 mx include:x.example -all"]
    assert "merged" in spf[0].purpose


def test_dmarc_rua_mta_sts_and_tlsrpt():
    records = expected("mx.host.example", "example.com", TOKEN, dmarc_rua="reports@example.com",
                       mta_sts_id="20261126T1", tlsrpt_rua="tls@example.com")
    assert by_name(records, "TXT", "_dmarc.example.com.").value == (
        "v=DMARC1; p=quarantine; rua=mailto:reports@example.com")
    assert by_name(records, "TXT", "_mta-sts.example.com.").value == "v=STSv1; id=20261126T1"
    assert by_name(records, "CNAME", "mta-sts.example.com.").value == "mx.host.example."
    assert by_name(records, "TXT", "_smtp._tls.example.com.").value == "v=TLSRPTv1; rua=mailto:tls@example.com"
    with pytest.raises(ValueError):
        expected("mx.host.example", "example.com", TOKEN, mta_sts_id="bad id")
    with pytest.raises(ValueError):
        expected("mx.host.example", "example.com", TOKEN, dmarc_rua="a@b; p=none")


def test_zone_and_table_rendering():
    records = expected("mx.host.example", "example.com", TOKEN, dmarc_rua="reports@example.com")
    zone = render_zone(records, ttl=300)
    lines = zone.splitlines()
    assert len(lines) == len(records)
    assert any(line.split() == ["example.com.", "300", "IN", "MX", "10", "mx.host.example."] for line in lines)
    assert any(line.split()[:4] == ["_dmarc.example.com.", "300", "IN", "TXT"] and
               '"v=DMARC1; p=quarantine; rua=mailto:reports@example.com"' in line for line in lines)
    table = render_table(records)
    rows = table.splitlines()
    assert rows[0].split() == ["Type", "Name", "Value", "Purpose"]
    assert set(rows[1]) <= {"-", " "}
    assert len(rows) == len(records) + 2
    assert any(row.startswith("SRV") and "_imaps._tcp.example.com." in row and "0 1 993" in row for row in rows)
