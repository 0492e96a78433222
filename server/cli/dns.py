"""`courriel domain wizard|records|verify|check`, `courriel dkim ...` and `courriel mailbox settings`.

Adds the DNS side of domain management to the `domain` and `mailbox` command groups of
`courriel.cli.registry`, and the `dkim` group for key rotation. Every command takes `--data`
and `--json`; refusals exit with status 2 having written nothing; a DNS check or verification
that finds problems exits with status 1 (so scripts and monitoring can act on it).
Security: private DKIM keys are never printed; only selectors, states and public keys.
"""

from __future__ import annotations

import argparse

from courriel.admin.services import dkim as dkim_service
from courriel.admin.services import dns as domain_dns
from courriel.admin.services import notices
from courriel.cli import EXIT_FAILURE, CommandError, emit, table
from courriel.cli import registry as registry_cli
from courriel.dns import checker
from courriel.dns.records import render_table, render_zone
from courriel.dns.resolver import Resolver


def _children(subparsers, name: str, help_text: str):
    """The sub-command group `name` (created by another CLI module, or here if absent)."""
    parser = subparsers.choices.get(name)
    if parser is None:
        return registry_cli._group(subparsers, name, help_text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"command {name} has no sub-commands")


# --------------------------------------------------------------------------- domain


def _check_text(result: checker.DomainCheck) -> str:
    rows = [{"status": r.status.upper(), "type": r.rtype, "name": r.name,
             "found": "; ".join(r.found) or "-", "detail": r.detail} for r in result.records]
    lines = [f"{result.domain}: {result.status}", table(rows, ["status", "type", "name", "found", "detail"])]
    for record in result.records:
        if record.status in (checker.MISSING, checker.WRONG):
            lines.append(f"  publish {record.rtype} {record.name} {record.expected}")
    return "\n".join(lines)


def _wizard_text(state: domain_dns.WizardState) -> str:
    lines = [f"Domain {state.domain}"]
    for step in state.steps:
        lines.append(f"  [{step.state:^7}] {step.name}")
        if step.state in ("todo", "problem"):
            lines += [f"            {r['type']} {r['name']} {r['value']}" for r in step.records]
    lines.append(f"Next step: {state.next_step}" if state.next_step else "Every step is done.")
    if state.next_step:
        lines.append("Publish the records above, then run `courriel domain check` (ownership: `domain verify`).")
    return "\n".join(lines)


def _domain_wizard(args, ctx):
    state = domain_dns.begin(ctx.db, ctx.config, args.name, algorithm=args.algorithm)
    emit(args, state.as_dict(), lambda: _wizard_text(state))


def _domain_records(args, ctx):
    expected = domain_dns.expected_records(ctx.db, ctx.config, args.name)
    has_key = any("._domainkey." in r.name for r in expected)
    note = "" if has_key else "\n(no DKIM key yet: run `courriel domain wizard` or `courriel dkim rotate`)"
    emit(args, domain_dns.record_rows(expected),
         lambda: "; zone file\n" + render_zone(expected) + "\n" + render_table(expected).rstrip() + note)


def _domain_verify(args, ctx):
    result = domain_dns.verify(ctx.db, ctx.config, args.name, resolver=Resolver.from_config(ctx.config))
    text = (f"{result.domain} is verified" if result.verified else
            f"{result.domain} is not verified: the TXT record is {result.check.status}"
            f" ({result.check.detail}); publish: TXT {result.check.name} \"{result.check.expected}\"")
    emit(args, result.as_dict(), text)
    return 0 if result.verified else EXIT_FAILURE


def _domain_check(args, ctx):
    if bool(args.all) == bool(args.name):
        raise CommandError("give a domain name or --all (not both)")
    resolver = Resolver.from_config(ctx.config)
    if args.all:
        results = domain_dns.check_all(ctx.db, ctx.config, resolver=resolver)
        emit(args, [r.as_dict() for r in results], lambda: "\n\n".join(_check_text(r) for r in results) or "(none)")
    else:
        results = [domain_dns.check(ctx.db, ctx.config, args.name, resolver=resolver)]
        emit(args, results[0].as_dict(), lambda: _check_text(results[0]))
    return 0 if all(r.status == checker.OK for r in results) else EXIT_FAILURE


def _register_domain(subparsers) -> None:
    children = _children(subparsers, "domain", "manage mail domains")
    parser = registry_cli._leaf(children, "wizard", "add a domain (if new), generate its DKIM key, show the steps",
                                _domain_wizard)
    parser.add_argument("name")
    parser.add_argument("--algorithm", choices=["rsa", "ed25519"], default=None,
                        help="DKIM key type for a new key (default: rsa, 2048 bits)")
    parser = registry_cli._leaf(children, "records", "print the DNS records to publish (zone file and table)",
                                _domain_records)
    parser.add_argument("name")
    parser = registry_cli._leaf(children, "verify", "check the ownership TXT record; the domain then receives mail",
                                _domain_verify)
    parser.add_argument("name")
    parser = registry_cli._leaf(children, "check", "check the published DNS records and store the result",
                                _domain_check)
    parser.add_argument("name", nargs="?")
    parser.add_argument("--all", action="store_true", help="check every domain")


# --------------------------------------------------------------------------- dkim


_KEY_COLUMNS = ["domain", "selector", "algorithm", "state", "created_at", "activated_at", "retired_at"]


def _key_row(info: dkim_service.DkimKeyInfo) -> dict:
    data = info.as_dict()
    return {k: data[k] for k in _KEY_COLUMNS} | {"public_key": info.public_key}


def _dkim_list(args, ctx):
    rows = [_key_row(k) for k in dkim_service.list_keys(ctx.db, args.domain)]
    emit(args, rows, lambda: table(rows, _KEY_COLUMNS))


def _dkim_rotate(args, ctx):
    info = dkim_service.rotate(ctx.db, ctx.config, args.domain, args.algorithm)
    record = dkim_service.dns_record(info)
    emit(args, _key_row(info) | {"record": {"type": record.rtype, "name": record.name, "value": record.value}},
         lambda: "\n".join([f"New {info.algorithm} key {info.selector} for {info.domain} (pending)",
                            "Publish:", render_zone([record]).rstrip(),
                            f"then run `courriel dkim activate {info.domain} {info.selector}`."]))


def _dkim_activate(args, ctx):
    info = dkim_service.activate(ctx.db, ctx.config, args.domain, args.selector,
                                 resolver=Resolver.from_config(ctx.config), force=args.force)
    emit(args, _key_row(info), f"{info.selector} now signs mail from {info.domain}")


def _dkim_retire(args, ctx):
    info = dkim_service.retire(ctx.db, ctx.config, args.domain, args.selector, force=args.force)
    emit(args, _key_row(info), f"{info.selector} of {info.domain} is retired: remove its DNS record "
                               f"{info.selector}._domainkey.{info.domain}")


def _register_dkim(subparsers) -> None:
    children = _children(subparsers, "dkim", "DKIM keys: list, rotate, activate, retire")
    parser = registry_cli._leaf(children, "list", "list DKIM keys and their states", _dkim_list)
    parser.add_argument("domain", nargs="?")
    parser = registry_cli._leaf(children, "rotate", "create a new pending key to publish", _dkim_rotate)
    parser.add_argument("domain")
    parser.add_argument("--algorithm", choices=["rsa", "ed25519"], default=None,
                        help="key type (default: the active key's, else rsa)")
    parser = registry_cli._leaf(children, "activate", "sign with a pending key once DNS publishes it",
                                _dkim_activate)
    parser.add_argument("domain")
    parser.add_argument("selector")
    parser.add_argument("--force", action="store_true", help="skip the DNS check")
    parser = registry_cli._leaf(children, "retire", "retire a replaced key after its grace period", _dkim_retire)
    parser.add_argument("domain")
    parser.add_argument("selector")
    parser.add_argument("--force", action="store_true", help="retire before the grace period ends")


# --------------------------------------------------------------------------- mailbox


def _mailbox_settings(args, ctx):
    settings = notices.mailbox_settings(ctx.db, ctx.config, args.address)
    emit(args, settings.as_dict(), lambda: f"Settings for {settings.address}\n{settings.text()}")


def _register_mailbox(subparsers) -> None:
    children = _children(subparsers, "mailbox", "manage mailboxes")
    parser = registry_cli._leaf(children, "settings", "print the mail client settings of a mailbox",
                                _mailbox_settings)
    parser.add_argument("address")


def register(subparsers) -> None:
    _register_domain(subparsers)
    _register_dkim(subparsers)
    _register_mailbox(subparsers)
