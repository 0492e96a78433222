"""Console pages for administrators (everything) and users (their own mailboxes, /account).

Each POST calls one service function, records the change in the audit log, sets a one-line
result message and redirects (303) back to a page; a refusal (`ServiceError`) becomes the
message instead, and nothing changes. Creating a mailbox, a user or an API key, and setting a
generated password, answer with a page that shows the secret this once.
Security: see `courriel.admin.web`; every route declares its access check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from courriel import passwords
from courriel.admin import audit, auth, services
from courriel.admin.api.context import Context, context
from courriel.admin.api.operations import dns_red_flags, health_summary, queue_entry, retry
from courriel.admin.api.registry import change_own_password
from courriel.admin.services import dkim as dkim_service
from courriel.admin.services import dns as dns_service
from courriel.admin.services import notices
from courriel.admin.services.errors import InvalidInput, ServiceError
from courriel.admin.web.rendering import flash, redirect, render
from courriel.models import QueueState
from courriel.queue import spool

router = APIRouter(include_in_schema=False)
Admin = Annotated[auth.Principal, Depends(auth.require_admin)]
Login = Annotated[auth.Principal, Depends(auth.require_login)]
Field = Annotated[str, Form(max_length=1000)]
PasswordField = Annotated[str, Form(max_length=1024)]
Lines = Annotated[str, Form(max_length=100_000)]
QUEUE_ID = re.compile(r"[0-9A-Za-z]{1,32}")


def q(value: str) -> str:
    """A path segment (addresses contain '@', IDN domains non-ASCII)."""
    return quote(value, safe="@")


def queue_key(queue_id: str) -> str:
    if not QUEUE_ID.fullmatch(queue_id):
        raise services.NotFound(f"queue entry {queue_id[:40]} does not exist")
    return queue_id


def attempt(request: Request, principal: auth.Principal, back: str, action: Callable[[], str | tuple[str, str]]
            ) -> Response:
    """Run `action`; flash its message and go to its page, or flash the refusal and go back."""
    try:
        result = action()
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect(back)
    message, url = result if isinstance(result, tuple) else (result, back)
    flash(request, principal, message)
    return redirect(url)


def split_lines(text: str) -> list[str]:
    return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]


def confirm(request: Request, principal: auth.Principal, action: str, question: str, back: str) -> Response:
    return render(request, "confirm.html", principal, action=action, question=question, back=back)


def secret_page(request: Request, principal: auth.Principal, title: str, label: str, secret: str, back: str,
                note: str = "") -> Response:
    response = render(request, "secret.html", principal, title=title, label=label, secret=secret, back=back,
                      note=note, score=passwords.score(secret))
    response.headers["Cache-Control"] = "no-store"
    return response


def chosen(ctx: Context, mode: str, password: str, again: str) -> str | None:
    """The password of a form with 'generate' or 'choose' (None: generate)."""
    if mode != "choose":
        return None
    if password != again:
        raise InvalidInput("the two passwords differ", "invalid_password")
    return password


# --------------------------------------------------------------------------- dashboard


@router.get("/")
def dashboard(request: Request, principal: Login) -> Response:
    if not principal.is_admin:
        return redirect("/account")
    ctx = context(request, principal)
    health = health_summary(ctx.db)
    entries = spool.list_entries(ctx.db, limit=1)
    return render(request, "dashboard.html", principal, health=health, domains=services.list_domains(ctx.db),
                  flagged=set(health["domains_with_dns_problems"]), oldest=entries[0] if entries else None,
                  queue_total=sum(health["queue"].values()))


# --------------------------------------------------------------------------- domains and DNS


@router.get("/domains")
def domains(request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    return render(request, "domains.html", principal, domains=services.list_domains(ctx.db),
                  flagged=set(dns_red_flags(ctx.db)))


@router.post("/domains")
def add_domain(request: Request, principal: Admin, name: Field = "", is_default: Field = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.add_domain(ctx.db, name, is_default=bool(is_default))
        ctx.audit("domain.add", info.name, is_default=info.is_default)
        return f"Domain {info.name} added.", f"/domains/{q(info.name)}"

    return attempt(request, principal, "/domains", action)


@router.post("/wizard")
def wizard_begin(request: Request, principal: Admin, name: Field = "", algorithm: Field = "rsa") -> Response:
    ctx = context(request, principal)

    def action():
        state = dns_service.begin(ctx.db, ctx.config, name, algorithm=algorithm or None)
        ctx.audit("domain.wizard", state.domain, algorithm=algorithm)
        return f"Domain {state.domain} is set up; publish its DNS records.", f"/domains/{q(state.domain)}"

    return attempt(request, principal, "/domains", action)


@router.get("/domains/{name}")
def domain(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    info = services.get_domain(ctx.db, name)
    try:
        wizard = dns_service.wizard(ctx.db, ctx.config, info.name)
        records = dns_service.record_rows(dns_service.expected_records(ctx.db, ctx.config, info.name))
        records_error = None
    except ServiceError as exc:
        wizard, records, records_error = None, [], exc.message
    stored, checked_at = dns_service.last_check(ctx.db, info.name)
    return render(request, "domain.html", principal, domain=info, wizard=wizard, records=records,
                  records_error=records_error, check=stored, checked_at=checked_at,
                  keys=dkim_service.list_keys(ctx.db, info.name),
                  mailboxes=services.list_mailboxes(ctx.db, domain=info.name))


@router.post("/domains/{name}/check")
def check_domain(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    back = f"/domains/{q(name)}"

    def action():
        result = dns_service.check(ctx.db, ctx.config, name)
        return f"DNS check of {result.domain}: {result.status}."

    return attempt(request, principal, back, action)


@router.post("/domains/{name}/verify")
def verify_domain(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        result = dns_service.verify(ctx.db, ctx.config, name)
        ctx.audit("domain.verify", result.domain, verified=result.verified)
        if result.verified:
            return f"Ownership of {result.domain} is verified."
        raise InvalidInput(f"ownership record not found yet ({result.check.status})", "not_verified")

    return attempt(request, principal, f"/domains/{q(name)}", action)


@router.post("/domains/{name}/settings")
def domain_settings(name: str, request: Request, principal: Admin, catch_all: Field = "",
                    is_default: Field = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.set_catch_all(ctx.db, name, catch_all.strip() or None)
        ctx.audit("domain.catch_all", info.name, catch_all=info.catch_all)
        if is_default and not info.is_default:
            info = services.set_default_domain(ctx.db, name)
            ctx.audit("domain.default", info.name)
        return f"Settings of {info.name} saved."

    return attempt(request, principal, f"/domains/{q(name)}", action)


@router.get("/domains/{name}/delete")
def confirm_remove_domain(name: str, request: Request, principal: Admin) -> Response:
    info = services.get_domain(context(request, principal).db, name)
    return confirm(request, principal, f"/domains/{q(info.name)}/delete",
                   f"Remove the domain {info.unicode_name} with its aliases and groups?", f"/domains/{q(info.name)}")


@router.post("/domains/{name}/delete")
def remove_domain(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        key = services.get_domain(ctx.db, name).name
        services.remove_domain(ctx.db, key)
        ctx.audit("domain.remove", key)
        return f"Domain {key} removed.", "/domains"

    return attempt(request, principal, f"/domains/{q(name)}", action)


@router.get("/dkim")
def dkim_keys(request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    keys = dkim_service.list_keys(ctx.db)
    return render(request, "dkim.html", principal, keys=keys,
                  records={(k.domain, k.selector): dkim_service.dns_record(k) for k in keys},
                  domains=services.list_domains(ctx.db))


@router.post("/dkim")
def rotate_dkim(request: Request, principal: Admin, domain: Field = "", algorithm: Field = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = dkim_service.rotate(ctx.db, ctx.config, domain, algorithm or None)
        ctx.audit("dkim.create", f"{info.selector}._domainkey.{info.domain}", algorithm=info.algorithm)
        return f"New key {info.selector} for {info.domain}: publish its record, then activate it."

    return attempt(request, principal, "/dkim", action)


@router.post("/dkim/{domain}/{selector}/{change}")
def change_dkim(domain: str, selector: str, change: str, request: Request, principal: Admin,
                force: Field = "") -> Response:
    ctx = context(request, principal)

    def action():
        if change not in ("activate", "retire"):
            raise InvalidInput("unknown key action", "invalid_action")
        function = dkim_service.activate if change == "activate" else dkim_service.retire
        info = function(ctx.db, ctx.config, domain, selector, force=bool(force))
        ctx.audit(f"dkim.{change}", f"{info.selector}._domainkey.{info.domain}", force=bool(force))
        return f"Key {info.selector} of {info.domain} is {info.state}."

    return attempt(request, principal, "/dkim", action)


# --------------------------------------------------------------------------- mailboxes


@router.get("/mailboxes")
def mailboxes(request: Request, principal: Admin, domain: Annotated[str, Query(max_length=253)] = "") -> Response:
    ctx = context(request, principal)
    listed = services.list_mailboxes(ctx.db, domain=domain or None)
    return render(request, "mailboxes.html", principal, mailboxes=listed,
                  domains=services.list_domains(ctx.db), users=services.list_users(ctx.db),
                  policy=ctx.policy)


@router.post("/mailboxes")
def add_mailbox(request: Request, principal: Admin, local_part: Field = "", domain: Field = "", user: Field = "",
                display_name: Field = "", quota: Field = "0", mode: Field = "generate", password: PasswordField = "",
                password_again: PasswordField = "", quota_messages: Field = "0") -> Response:
    ctx = context(request, principal)
    try:
        address = f"{local_part.strip()}@{domain.strip()}"
        info, generated = services.add_mailbox(
            ctx.db, ctx.hasher, ctx.policy, address, user=user.strip() or None,
            password=chosen(ctx, mode, password, password_again), quota_bytes=services.parse_size(quota or "0"),
            quota_messages=services.parse_message_count(quota_messages or "0"), display_name=display_name,
            max_per_user=services.max_per_user_per_domain(ctx.config),
            notifier=ctx.notifier,
        )
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect("/mailboxes")
    ctx.audit("mailbox.add", info.address, user=info.user, generated=generated is not None)
    if generated is None:
        flash(request, principal, f"Mailbox {info.address} created.")
        return redirect(f"/mailboxes/{q(info.address)}")
    return secret_page(request, principal, f"Mailbox {info.address} created", "Password", generated,
                       f"/mailboxes/{q(info.address)}", "Give this password to the mailbox owner now: it is not "
                       "stored and cannot be shown again.")


@router.get("/mailboxes/{address}")
def mailbox(address: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    info = services.get_mailbox(ctx.db, address)
    aliases = [a for a in services.list_aliases(ctx.db, domain=None) if info.address in a.targets]
    groups = [g for g in services.list_groups(ctx.db) if info.address in g.members]
    return render(request, "mailbox.html", principal, mailbox=info, aliases=aliases, groups=groups,
                  settings=notices.connection_settings(ctx.config, info.address), policy=ctx.policy)


@router.post("/mailboxes/{address}/password")
def set_mailbox_password(address: str, request: Request, principal: Admin, mode: Field = "generate",
                         password: PasswordField = "", password_again: PasswordField = "") -> Response:
    ctx = context(request, principal)
    back = f"/mailboxes/{q(address)}"
    try:
        key = services.get_mailbox(ctx.db, address).address
        generated = services.set_mailbox_password(ctx.db, ctx.hasher, ctx.policy, key,
                                                  chosen(ctx, mode, password, password_again), notifier=ctx.notifier)
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect(back)
    auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, key)
    ctx.audit("mailbox.password", key, generated=generated is not None)
    if generated is None:
        flash(request, principal, f"Password of {key} changed.")
        return redirect(back)
    return secret_page(request, principal, f"New password for {key}", "Password", generated, back,
                       "It is not stored and cannot be shown again.")


@router.post("/mailboxes/{address}/settings")
def mailbox_settings(address: str, request: Request, principal: Admin, enabled: Field = "",
                     quota: Field = "0", quota_messages: Field = "0") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.set_mailbox_quota(ctx.db, address, services.parse_size(quota or "0"),
                                          services.parse_message_count(quota_messages or "0"))
        ctx.audit("mailbox.quota", info.address, quota_bytes=info.quota_bytes, quota_messages=info.quota_messages)
        if bool(enabled) != info.enabled:
            info = services.set_mailbox_enabled(ctx.db, address, bool(enabled))
            if not info.enabled:
                auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, info.address)
            ctx.audit("mailbox.enable" if info.enabled else "mailbox.disable", info.address)
        return f"Settings of {info.address} saved."

    return attempt(request, principal, f"/mailboxes/{q(address)}", action)


@router.get("/mailboxes/{address}/delete")
def confirm_remove_mailbox(address: str, request: Request, principal: Admin) -> Response:
    info = services.get_mailbox(context(request, principal).db, address)
    return confirm(request, principal, f"/mailboxes/{q(info.address)}/delete",
                   f"Delete the mailbox {info.address} and every message in it? This cannot be undone.",
                   f"/mailboxes/{q(info.address)}")


@router.post("/mailboxes/{address}/delete")
def remove_mailbox(address: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        key = services.get_mailbox(ctx.db, address).address
        services.remove_mailbox(ctx.db, key)
        auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, key)
        ctx.audit("mailbox.remove", key)
        return f"Mailbox {key} deleted.", "/mailboxes"

    return attempt(request, principal, f"/mailboxes/{q(address)}", action)


# --------------------------------------------------------------------------- aliases and groups


@router.get("/aliases")
def aliases(request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    return render(request, "aliases.html", principal, aliases=services.list_aliases(ctx.db),
                  domains=services.list_domains(ctx.db))


@router.post("/aliases")
def add_alias(request: Request, principal: Admin, address: Field = "", targets: Lines = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.add_alias(ctx.db, address, split_lines(targets))
        ctx.audit("alias.add", info.address, targets=info.targets)
        return f"Alias {info.address} added."

    return attempt(request, principal, "/aliases", action)


@router.post("/aliases/{address}/targets")
def set_alias_targets(address: str, request: Request, principal: Admin, targets: Lines = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.set_alias_targets(ctx.db, address, split_lines(targets))
        ctx.audit("alias.targets", info.address, targets=info.targets)
        return f"Alias {info.address} saved."

    return attempt(request, principal, "/aliases", action)


@router.get("/aliases/{address}/delete")
def confirm_remove_alias(address: str, request: Request, principal: Admin) -> Response:
    return confirm(request, principal, f"/aliases/{q(address)}/delete", f"Remove the alias {address}?", "/aliases")


@router.post("/aliases/{address}/delete")
def remove_alias(address: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        services.remove_alias(ctx.db, address)
        ctx.audit("alias.remove", address.strip().lower())
        return f"Alias {address} removed."

    return attempt(request, principal, "/aliases", action)


@router.get("/groups")
def groups(request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    return render(request, "groups.html", principal, groups=services.list_groups(ctx.db))


@router.post("/groups")
def add_group(request: Request, principal: Admin, address: Field = "", members: Lines = "",
              members_can_send: Field = "") -> Response:
    ctx = context(request, principal)

    def action():
        info = services.add_group(ctx.db, address, split_lines(members), members_can_send=bool(members_can_send))
        ctx.audit("group.add", info.address, members=info.members, members_can_send=info.members_can_send)
        return f"Group {info.address} added.", f"/groups/{q(info.address)}"

    return attempt(request, principal, "/groups", action)


@router.get("/groups/{address}")
def group(address: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    return render(request, "group.html", principal, group=services.get_group(ctx.db, address))


@router.post("/groups/{address}/members")
def change_group_members(address: str, request: Request, principal: Admin, add: Lines = "",
                         remove: Annotated[list[str] | None, Form()] = None) -> Response:
    ctx = context(request, principal)

    def action():
        info = services.get_group(ctx.db, address)
        if split_lines(add):
            info = services.add_group_members(ctx.db, address, split_lines(add))
            ctx.audit("group.members_add", info.address, members=split_lines(add))
        if remove:
            info = services.remove_group_members(ctx.db, address, remove[:1000])
            ctx.audit("group.members_remove", info.address, members=remove[:1000])
        return f"Members of {info.address} saved."

    return attempt(request, principal, f"/groups/{q(address)}", action)


@router.get("/groups/{address}/delete")
def confirm_remove_group(address: str, request: Request, principal: Admin) -> Response:
    return confirm(request, principal, f"/groups/{q(address)}/delete", f"Remove the group {address}?",
                   f"/groups/{q(address)}")


@router.post("/groups/{address}/delete")
def remove_group(address: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        key = services.get_group(ctx.db, address).address
        services.remove_group(ctx.db, key)
        ctx.audit("group.remove", key)
        return f"Group {key} removed.", "/groups"

    return attempt(request, principal, f"/groups/{q(address)}", action)


# --------------------------------------------------------------------------- users and keys


@router.get("/users")
def users(request: Request, principal: Admin) -> Response:
    return render(request, "users.html", principal, users=services.list_users(context(request, principal).db))


@router.post("/users")
def add_user(request: Request, principal: Admin, name: Field = "", role: Field = "user", email: Field = "",
             display_name: Field = "") -> Response:
    ctx = context(request, principal)
    try:
        info, generated = services.add_user(ctx.db, ctx.hasher, ctx.policy, name, role=role, email=email or None,
                                            display_name=display_name)
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect("/users")
    ctx.audit("user.add", info.name, role=info.role, generated=True)
    return secret_page(request, principal, f"User {info.name} created", "Password", generated, "/users",
                       "It is not stored and cannot be shown again.")


@router.post("/users/{name}/password")
def set_user_password(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    try:
        key = services.get_user(ctx.db, name).name
        generated = services.set_user_password(ctx.db, ctx.hasher, ctx.policy, key)
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect("/users")
    keep = principal.session_id if principal.name == key else None
    auth.end_sessions_of(ctx.db, auth.KIND_USER, key, keep=keep)
    ctx.audit("user.password", key, generated=True)
    return secret_page(request, principal, f"New password for {key}", "Password", generated, "/users")


@router.get("/users/{name}/delete")
def confirm_remove_user(name: str, request: Request, principal: Admin) -> Response:
    return confirm(request, principal, f"/users/{q(name)}/delete", f"Remove the console account {name}?", "/users")


@router.post("/users/{name}/delete")
def remove_user(name: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        key = services.get_user(ctx.db, name).name
        services.remove_user(ctx.db, key)
        auth.end_sessions_of(ctx.db, auth.KIND_USER, key)
        ctx.audit("user.remove", key)
        return f"User {key} removed."

    return attempt(request, principal, "/users", action)


@router.get("/keys")
def api_keys(request: Request, principal: Admin) -> Response:
    return render(request, "keys.html", principal, keys=auth.list_api_keys(context(request, principal).db))


@router.post("/keys")
def create_api_key(request: Request, principal: Admin, name: Field = "") -> Response:
    ctx = context(request, principal)
    try:
        info, token = auth.create_api_key(ctx.db, name, principal.name)
    except ServiceError as exc:
        flash(request, principal, exc.message, ok=False)
        return redirect("/keys")
    ctx.audit("api_key.create", info.prefix, name=info.name)
    return secret_page(request, principal, f"API key {info.name} created", "Token", token, "/keys",
                       "Send it as 'Authorization: Bearer <token>'. It is not stored and cannot be shown again.")


@router.post("/keys/{prefix}/revoke")
def revoke_api_key(prefix: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        info = auth.revoke_api_key(ctx.db, prefix)
        ctx.audit("api_key.revoke", info.prefix, name=info.name)
        return f"API key {info.name} revoked."

    return attempt(request, principal, "/keys", action)


# --------------------------------------------------------------------------- queue and audit


@router.get("/queue")
def queue(request: Request, principal: Admin,
          state: Annotated[str, Query(pattern="^(|" + "|".join(s.value for s in QueueState) + ")$")] = "") -> Response:
    ctx = context(request, principal)
    entries = [queue_entry(e) for e in spool.list_entries(ctx.db, state=state or None, limit=500)]
    return render(request, "queue.html", principal, entries=entries, state=state,
                  states=[s.value for s in QueueState if s != QueueState.DONE])


@router.post("/queue/flush")
def flush_queue(request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    changed = spool.flush(ctx.db)
    ctx.audit("queue.flush", "", changed=changed)
    flash(request, principal, f"{changed} deferred message(s) are due now.")
    return redirect("/queue")


@router.post("/queue/{queue_id}/retry")
def retry_queue_entry(queue_id: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        changed = retry(ctx.db, queue_key(queue_id))
        ctx.audit("queue.retry", queue_id, changed=changed)
        return f"Message {queue_id} is due now."

    return attempt(request, principal, "/queue", action)


@router.get("/queue/{queue_id}/delete")
def confirm_delete_queue_entry(queue_id: str, request: Request, principal: Admin) -> Response:
    queue_key(queue_id)
    return confirm(request, principal, f"/queue/{q(queue_id)}/delete",
                   f"Delete message {queue_id} from the queue without delivering it?", "/queue")


@router.post("/queue/{queue_id}/delete")
def delete_queue_entry(queue_id: str, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)

    def action():
        if not spool.remove(ctx.db, queue_key(queue_id)):
            raise services.NotFound(f"queue entry {queue_id} does not exist")
        ctx.audit("queue.delete", queue_id)
        return f"Message {queue_id} deleted."

    return attempt(request, principal, "/queue", action)


@router.get("/audit")
def audit_log(request: Request, principal: Admin,
              before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    entries = audit.entries(context(request, principal).db, limit=100, before_id=before)
    return render(request, "audit.html", principal, entries=entries,
                  older=entries[-1].id if len(entries) == 100 else None)


# --------------------------------------------------------------------------- a user's own mailboxes


@router.get("/account")
def account(request: Request, principal: Login) -> Response:
    ctx = context(request, principal)
    own = [services.get_mailbox(ctx.db, a) for a in auth.own_mailboxes(ctx.db, principal)]
    return render(request, "account.html", principal, mailboxes=own)


@router.get("/account/{address}")
def account_mailbox(address: str, request: Request, principal: Login) -> Response:
    ctx = context(request, principal)
    key = auth.ensure_own_mailbox(ctx.db, principal, address)
    return render(request, "account_mailbox.html", principal, mailbox=services.get_mailbox(ctx.db, key),
                  settings=notices.connection_settings(ctx.config, key), policy=ctx.policy)


@router.post("/account/{address}/password")
def change_password(address: str, request: Request, principal: Login, old_password: PasswordField = "",
                    new_password: PasswordField = "", new_password_again: PasswordField = "") -> Response:
    ctx = context(request, principal)

    def action():
        if new_password != new_password_again:
            raise InvalidInput("the two new passwords differ", "invalid_password")
        key = change_own_password(ctx, principal, address, old_password, new_password)
        return f"Password of {key} changed. Update it in your mail programs."

    try:
        return attempt(request, principal, f"/account/{q(address)}", action)
    except auth.Throttled as exc:
        flash(request, principal, f"Too many wrong passwords; try again in {exc.retry_after} seconds.", ok=False)
        return redirect(f"/account/{q(address)}")
