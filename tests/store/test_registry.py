"""Registry resolution on both backends: mailboxes, aliases, groups, sub-addressing, catch-all,
loops, IDNA, bad input, sender ownership; and the service layer's refusals."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from courriel import passwords, registry
from courriel.admin import services
from courriel.models import Folder, Mailbox
from courriel.registry import AddressError, Outcome, RejectReason

HASHER = passwords.PasswordHasher(memory_kib=1024, time_cost=1)
POLICY = passwords.PasswordPolicy()


def mailbox(db, address, **kwargs):
    info, _ = services.add_mailbox(db, HASHER, POLICY, address, password="Correct horse 9", **kwargs)
    return info


def resolve(db, address):
    with db.read() as session:
        return registry.resolve(session, address)


@pytest.fixture
def world(db):
    services.add_domain(db, "example.com", is_default=True)
    services.add_domain(db, "bücher.example")
    ids = {name: mailbox(db, f"{name}@example.com").id for name in ("alice", "bob", "carol")}
    ids["jörg"] = mailbox(db, "Jörg@Bücher.example").id
    return ids


@pytest.mark.parametrize("text", [
    "", "no-at-sign", "@example.com", "alice@", "a..b@example.com", ".a@example.com", "a.@example.com",
    '"quoted"@example.com', "sp ace@example.com", "alice@[127.0.0.1]", "alice@exa_mple.com", "alice@-bad.com",
    "alice@example..com", "a\x00b@example.com", "alice@xn--zz.com", "x" * 65 + "@example.com",
    "alice@" + ("a" * 63 + ".") * 4 + "com", "alice@1.2.3.4",
])
def test_bad_addresses_do_not_parse(text):
    with pytest.raises(AddressError):
        registry.parse_address(text)


@given(st.text(max_size=80))
def test_parse_is_total_and_idempotent(text):
    try:
        parsed = registry.parse_address(text)
    except AddressError:
        return
    assert registry.parse_address(str(parsed)) == parsed
    assert str(parsed) == str(parsed).lower() and parsed.domain.isascii()


@given(st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}@[a-zA-Z][a-zA-Z0-9-]{0,10}\.(com|org|fr)", fullmatch=True))
def test_ordinary_addresses_parse(text):
    if ".." in text or ".@" in text or "-." in text or "--" in text.partition("@")[2]:
        return
    assert str(registry.parse_address(text)) == text.lower()


def test_parse_canonical_forms():
    assert str(registry.parse_address("<Alice.Smith@EXAMPLE.COM>")) == "alice.smith@example.com"
    assert str(registry.parse_address("jörg@Bücher.Example.")) == "jörg@xn--bcher-kva.example"
    assert str(registry.parse_address("x@xn--bcher-kva.example")) == "x@xn--bcher-kva.example"
    assert registry.parse_address("user+tag+more@example.com").base == registry.Address("user", "example.com")
    assert registry.parse_address("+tag@example.com").base is None
    assert registry.RejectReason.UNKNOWN_RECIPIENT.enhanced_status == "5.1.1"
    assert registry.parse_address("jörg@example.com").needs_smtputf8
    assert not registry.parse_address("jorg@bücher.example").needs_smtputf8


def test_mailbox_case_insensitive_and_idna(db, world):
    result = resolve(db, "ALICE@Example.COM")
    assert result.outcome is Outcome.DELIVER and result.mailbox_ids == (world["alice"],)
    for spelling in ("jörg@bücher.example", "JÖRG@xn--bcher-kva.example", "Jörg@BÜCHER.example"):
        assert resolve(db, spelling).mailbox_ids == (world["jörg"],), spelling
    with db.read() as session:
        assert registry.is_local_domain(session, "BÜCHER.example")
        assert registry.is_local_domain(session, "xn--bcher-kva.example")
        assert not registry.is_local_domain(session, "example.org")
        assert not registry.is_local_domain(session, "not a domain")
        # Every new mailbox got its default folders from the store.
        count = session.scalar(select(func.count(Folder.id)).where(Folder.mailbox_id == world["alice"]))
        assert count == 5


def test_unknown_remote_invalid_and_disabled(db, world):
    unknown = resolve(db, "nobody@example.com")
    assert unknown.outcome is Outcome.REJECT and unknown.reason is RejectReason.UNKNOWN_RECIPIENT
    remote = resolve(db, "Someone@Example.ORG")
    assert remote.outcome is Outcome.REMOTE and remote.forwards == ("someone@example.org",)
    invalid = resolve(db, "bad..address@example.com")
    assert invalid.reason is RejectReason.INVALID_ADDRESS
    services.set_mailbox_enabled(db, "bob@example.com", False)
    disabled = resolve(db, "bob@example.com")
    assert disabled.outcome is Outcome.REJECT and disabled.reason is RejectReason.MAILBOX_DISABLED
    services.set_mailbox_enabled(db, "bob@example.com", True)
    assert resolve(db, "bob@example.com").accepted


def test_postmaster_falls_back_to_the_default_domain(db, world):
    assert resolve(db, "postmaster@example.com").reason is RejectReason.UNKNOWN_RECIPIENT
    services.add_alias(db, "postmaster@example.com", ["carol@example.com"])
    assert resolve(db, "PostMaster@bücher.example").mailbox_ids == (world["carol"],)
    mailbox(db, "postmaster@bücher.example")
    assert resolve(db, "postmaster@bücher.example").mailbox_ids != (world["carol"],)
    assert resolve(db, "postmistress@bücher.example").reason is RejectReason.UNKNOWN_RECIPIENT


def test_subaddressing(db, world):
    assert resolve(db, "alice+news@example.com").mailbox_ids == (world["alice"],)
    assert resolve(db, "Alice+A+B@example.com").mailbox_ids == (world["alice"],)
    # An address that exists in full wins over the sub-address rule.
    mailbox(db, "alice+work@example.com")
    exact = resolve(db, "alice+work@example.com")
    assert exact.mailbox_ids != (world["alice"],) and len(exact.mailbox_ids) == 1
    assert resolve(db, "nobody+tag@example.com").reason is RejectReason.UNKNOWN_RECIPIENT


def test_aliases_local_external_and_chains(db, world):
    services.add_alias(db, "team@example.com", ["alice@example.com", "Bob@Example.com", "ext@Partner.org"])
    result = resolve(db, "TEAM@example.com")
    assert result.accepted
    assert set(result.mailbox_ids) == {world["alice"], world["bob"]}
    assert result.forwards == ("ext@partner.org",)
    services.add_alias(db, "all@example.com", ["team@example.com", "carol@example.com", "alice@example.com"])
    chained = resolve(db, "all@example.com")
    assert sorted(chained.mailbox_ids) == sorted([world["alice"], world["bob"], world["carol"]])
    assert resolve(db, "team+x@example.com").forwards == ("ext@partner.org",)
    # An alias to a disabled mailbox skips it; when nothing is left the reason says so.
    services.add_alias(db, "solo@example.com", ["carol@example.com"])
    services.set_mailbox_enabled(db, "carol@example.com", False)
    assert resolve(db, "solo@example.com").reason is RejectReason.MAILBOX_DISABLED
    assert set(resolve(db, "all@example.com").mailbox_ids) == {world["alice"], world["bob"]}


def test_alias_loops_resolve_to_non_looping_targets(db, world):
    services.add_alias(db, "a@example.com", ["b@example.com", "alice@example.com"])
    services.add_alias(db, "b@example.com", ["c@example.com"])
    services.add_alias(db, "c@example.com", ["a@example.com", "b@example.com"])
    for name in ("a", "b", "c"):
        assert resolve(db, f"{name}@example.com").mailbox_ids == (world["alice"],), name
    services.add_alias(db, "x@example.com", ["y@example.com"])
    services.add_alias(db, "y@example.com", ["x@example.com"])
    pure_loop = resolve(db, "x@example.com")
    assert pure_loop.outcome is Outcome.REJECT and pure_loop.reason is RejectReason.ALIAS_LOOP
    # A chain deeper than the limit is cut, not followed forever.
    depth = registry.MAX_EXPANSION_DEPTH + 3
    for i in range(depth):
        services.add_alias(db, f"d{i}@example.com", [f"d{i + 1}@example.com"])
    services.add_alias(db, f"d{depth}@example.com", ["bob@example.com"])
    assert resolve(db, f"d{depth - 2}@example.com").mailbox_ids == (world["bob"],)
    assert resolve(db, "d0@example.com").reason is RejectReason.ALIAS_LOOP


def test_groups_and_sender_ownership(db, world):
    services.add_group(db, "staff@example.com", ["alice@example.com", "bob@example.com"])
    services.add_group(db, "news@example.com", ["alice@example.com"], members_can_send=False)
    assert set(resolve(db, "staff@example.com").mailbox_ids) == {world["alice"], world["bob"]}
    services.set_mailbox_enabled(db, "bob@example.com", False)
    assert resolve(db, "staff@example.com").mailbox_ids == (world["alice"],)
    services.add_alias(db, "boss@example.com", ["alice@example.com"])
    services.add_alias(db, "chief@example.com", ["boss@example.com"])
    with db.read() as session:
        owned = registry.addresses_owned_by(session, world["alice"])
        assert owned == {"alice@example.com", "staff@example.com", "boss@example.com", "chief@example.com"}
        assert registry.owns_address(session, world["alice"], "Alice+tag@EXAMPLE.com")
        assert not registry.owns_address(session, world["alice"], "news@example.com")
        assert not registry.owns_address(session, world["carol"], "staff@example.com")
        assert not registry.owns_address(session, world["alice"], "not an address")


def test_catch_all(db, world):
    services.set_catch_all(db, "example.com", "carol@example.com")
    result = resolve(db, "whatever@example.com")
    assert result.mailbox_ids == (world["carol"],)
    assert resolve(db, "alice@example.com").mailbox_ids == (world["alice"],)
    services.set_catch_all(db, "bücher.example", "postmaster@elsewhere.net")
    assert resolve(db, "anyone@xn--bcher-kva.example").forwards == ("postmaster@elsewhere.net",)
    with pytest.raises(services.NotFound):
        services.set_catch_all(db, "example.com", "ghost@example.com")
    # A catch-all whose mailbox was removed later makes unknown addresses unknown, not loops.
    mailbox(db, "bin@example.com")
    services.set_catch_all(db, "example.com", "bin@example.com")
    services.remove_mailbox(db, "bin@example.com")
    assert resolve(db, "whatever@example.com").reason is RejectReason.UNKNOWN_RECIPIENT
    services.set_catch_all(db, "example.com", None)
    assert resolve(db, "whatever@example.com").reason is RejectReason.UNKNOWN_RECIPIENT


def _snapshot(db):
    from courriel.models import Base

    with db.read() as session:
        return {
            name: sorted(map(repr, session.execute(select(table)).all()))
            for name, table in Base.metadata.tables.items()
        }


@pytest.mark.parametrize("call, code", [
    (lambda db: services.add_domain(db, "bad_domain.com"), "invalid_domain"),
    (lambda db: services.add_domain(db, "localhost"), "invalid_domain"),
    (lambda db: services.add_domain(db, "EXAMPLE.com"), "duplicate"),
    (lambda db: services.remove_domain(db, "example.com"), "in_use"),
    (lambda db: services.remove_domain(db, "example.net"), "not_found"),
    (lambda db: mailbox(db, "alice@example.com"), "duplicate"),
    (lambda db: mailbox(db, "staff@example.com"), "duplicate"),
    (lambda db: mailbox(db, "x@unknown.example"), "not_found"),
    (lambda db: mailbox(db, "bad address@example.com"), "invalid_address"),
    (lambda db: mailbox(db, "x@example.com", user="nobody"), "not_found"),
    (lambda db: mailbox(db, "x@example.com", quota_bytes=-1), "invalid_quota"),
    (lambda db: services.add_mailbox(db, HASHER, POLICY, "x@example.com", password="short"), "invalid_password"),
    (lambda db: services.add_alias(db, "alias@example.com", []), "invalid_target"),
    (lambda db: services.add_alias(db, "alias@example.com", ["alias@EXAMPLE.com"]), "invalid_target"),
    (lambda db: services.add_alias(db, "alias@example.com", ["ok@example.org", "bad@@x"]), "invalid_address"),
    (lambda db: services.add_alias(db, "bob@example.com", ["alice@example.com"]), "duplicate"),
    (lambda db: services.add_group(db, "g@example.com", ["ghost@example.com"]), "not_found"),
    (lambda db: services.add_group_members(db, "staff@example.com", ["alice@example.com"]), "duplicate"),
    (lambda db: services.remove_group_members(db, "staff@example.com", ["carol@example.com"]), "not_found"),
    (lambda db: services.add_user(db, HASHER, POLICY, "Bad Name!"), "invalid_name"),
    (lambda db: services.add_user(db, HASHER, POLICY, "zed", role="root"), "invalid_role"),
    (lambda db: services.add_user(db, HASHER, POLICY, "zed", email="nope"), "invalid_address"),
    (lambda db: services.remove_user(db, "owner"), "in_use"),
])
def test_service_refusals_change_nothing(db, world, call, code):
    services.add_group(db, "staff@example.com", ["alice@example.com"])
    services.add_user(db, HASHER, POLICY, "owner", display_name="Owner Name")
    mailbox(db, "owned@example.com", user="owner")
    before = _snapshot(db)
    with pytest.raises(services.ServiceError) as caught:
        call(db)
    assert caught.value.code == code, caught.value
    assert _snapshot(db) == before


def test_mailbox_limits_generation_and_removal(db, world):
    dana, generated = services.add_user(db, HASHER, POLICY, "dana", display_name="Dana Scully")
    assert dana.role == "user" and generated and not POLICY.problems(generated)
    assert services.get_user(db, "DANA") == dana
    assert HASHER.verify(generated, _user_hash(db, "dana"))
    first, password = services.add_mailbox(db, HASHER, POLICY, "dana@example.com", user="dana")
    assert first.display_name == "Dana Scully" and password and not POLICY.problems(password)
    services.add_mailbox(db, HASHER, POLICY, "d.scully@example.com", user="dana", password="Another one 42")
    with pytest.raises(services.Conflict) as caught:
        services.add_mailbox(db, HASHER, POLICY, "third@example.com", user="dana")
    assert caught.value.code == "limit_reached"
    # The limit is per domain.
    services.add_mailbox(db, HASHER, POLICY, "dana@bücher.example", user="dana")
    assert [m.address for m in services.list_mailboxes(db, user="dana")] == [
        "d.scully@example.com", "dana@example.com", "dana@xn--bcher-kva.example"]
    services.add_group(db, "x-files@example.com", ["dana@example.com"])
    services.remove_mailbox(db, "dana@example.com")
    assert services.get_group(db, "x-files@example.com").members == []
    assert resolve(db, "dana@example.com").reason is RejectReason.UNKNOWN_RECIPIENT
    with db.read() as session:
        assert session.scalar(select(func.count(Folder.id)).where(Folder.mailbox_id == first.id)) == 0
    new_password = services.set_mailbox_password(db, HASHER, POLICY, "d.scully@example.com")
    with db.read() as session:
        stored = session.scalar(select(Mailbox.password_hash).where(Mailbox.address == "d.scully@example.com"))
    assert HASHER.verify(new_password, stored) and not HASHER.verify("Another one 42", stored)


def test_domain_default_and_removal(db, world):
    services.add_domain(db, "other.example", is_default=True)
    defaults = [d.name for d in services.list_domains(db) if d.is_default]
    assert defaults == ["other.example"]
    info = services.get_domain(db, "bücher.example")
    assert info.unicode_name == "bücher.example" and len(info.verification_token) == 32
    services.add_alias(db, "x@other.example", ["alice@example.com"])
    services.remove_domain(db, "other.example")
    assert [a.address for a in services.list_aliases(db)] == []
    assert "other.example" not in [d.name for d in services.list_domains(db)]


def _user_hash(db, name):
    from courriel.models import User

    with db.read() as session:
        return session.scalar(select(User.password_hash).where(User.name == name))
