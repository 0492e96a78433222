"""The web console in a real browser (Debian's Chromium driven by Playwright, headless) against
`courriel serve --role admin` on a loopback port: an admin signs in, adds a domain and creates
a mailbox with a generated password; the mailbox's user signs in and changes the password.

No browser is downloaded: the test skips when /usr/bin/chromium is absent. On failure a
screenshot is saved under test-artifacts/."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from serve_process import (  # noqa: F401
    STOP_DEADLINE,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
)

from courriel import config as config_mod
from courriel import passwords
from courriel.admin import services
from courriel.db import Database

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN = ("webadmin", "Web-admin-2026")
TIMEOUT_MS = 20_000


@pytest.fixture
def console_url(served_data, tmp_path):  # noqa: F811
    config = config_mod.load(served_data, dev=True)
    db = Database(config.database_url)
    try:
        services.add_user(db, passwords.PasswordHasher.from_config(config), passwords.PasswordPolicy(), ADMIN[0],
                          role="admin", password=ADMIN[1])
    finally:
        db.dispose()
    environ = listener_environ()
    environ["COURRIEL_DOMAINS_CHECK_INTERVAL"] = "0"  # no DNS lookups off this machine
    served = serve(served_data, environ, tmp_path / "admin.log", "--role", "admin")
    try:
        port = admin_port(environ)
        wait_healthy(port, served)
        yield f"http://127.0.0.1:{port}"
    finally:
        served.process.send_signal(signal.SIGTERM)
        served.wait_exit(STOP_DEADLINE)


@pytest.fixture
def page(request, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 390, "height": 844},  # phone width
        )
        context.set_default_timeout(TIMEOUT_MS)
        browser_page = context.pages[0] if context.pages else context.new_page()
        errors: list[str] = []
        # Script, style or CSP errors fail the test; the deliberate wrong sign-in answers 401.
        browser_page.on("console", lambda message: message.type == "error" and "401" not in message.text
                        and errors.append(message.text))
        failed_before = request.session.testsfailed
        try:
            yield browser_page
            assert not errors, f"browser console errors: {errors}"
        finally:
            if request.session.testsfailed > failed_before:
                ARTIFACTS.mkdir(exist_ok=True)
                browser_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()


def sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name or mailbox address").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def poll(condition, deadline: float = 10.0) -> bool:
    """Poll `condition()` until it is true or `deadline` seconds pass (no sleeping on a guess)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def flash_text(page) -> str:
    return page.locator("p.flash").first.inner_text()


def test_admin_creates_a_mailbox_and_the_user_changes_its_password(page, console_url):
    # The admin signs in and adds a domain.
    sign_in(page, console_url, *ADMIN)
    page.wait_for_url(f"{console_url}/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    page.goto(f"{console_url}/domains")
    page.get_by_label("Domain name", exact=True).last.fill("browser.example")
    page.get_by_role("button", name="Add domain").click()
    page.wait_for_url(re.compile(r".*/domains/browser\.example$"))
    assert "browser.example added" in flash_text(page)

    # A mailbox with a generated password; the strength meter reacts to a typed password.
    page.goto(f"{console_url}/mailboxes")
    page.get_by_label("Name (before the @)").fill("carol")
    page.get_by_label("Domain", exact=True).select_option("browser.example")
    meter = page.locator("#new-meter")
    page.get_by_label("New password").fill("Quite-long-passphrase-2026!")
    assert poll(lambda: meter.evaluate("m => m.value") >= 3), "the strength meter did not move"
    page.get_by_label("New password").fill("")
    page.get_by_role("button", name="Create mailbox").click()
    assert page.get_by_role("heading", name="Mailbox carol@browser.example created").is_visible()
    generated = page.get_by_label("Password").input_value()
    assert len(generated) >= 10
    assert page.get_by_role("button", name="Copy").is_visible()  # shown by the script (CSP allows it)
    assert meter.count() == 0
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(re.compile(r".*/mailboxes/carol@browser\.example$"))
    assert generated not in page.content()  # never rendered again
    assert page.get_by_text("Mail client settings for carol@browser.example").is_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console_url}/login")

    # The mailbox's user signs in with the generated password and changes it.
    sign_in(page, console_url, "carol@browser.example", generated)
    page.wait_for_url(f"{console_url}/account")
    page.get_by_role("link", name="carol@browser.example").click()
    page.get_by_label("Current password").fill(generated)
    page.get_by_label("New password", exact=True).fill("Carols-new-pass-2026")
    page.get_by_label("Repeat the new password").fill("Carols-new-pass-2026")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url(re.compile(r".*/account/carol@browser\.example$"))
    assert "Password of carol@browser.example changed" in flash_text(page)
    page.get_by_role("button", name="Sign out").click()

    # The old password no longer works, the new one does.
    sign_in(page, console_url, "carol@browser.example", generated)
    assert "Wrong name or password" in page.locator("p.flash").inner_text()
    sign_in(page, console_url, "carol@browser.example", "Carols-new-pass-2026")
    page.wait_for_url(f"{console_url}/account")
