"""Every page fits a phone and passes axe: no sideways scroll from 360 px up, no serious or critical
accessibility violation in the light and the dark colour scheme, and a logo and favicon that load
(no 404 on any page).

SCREENS is the table of pages: to cover a new page, add a row with a function that brings the
browser to it (signed in as whoever needs to be).

axe-core (bundled by axe-playwright-python) is injected with Playwright's `page.evaluate`, which
runs through the DevTools protocol: the page's own Content-Security-Policy (no inline script) does
not govern it, so the pages are checked exactly as served, with the policy on (no `bypass_csp`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.service import confirmations, webhook_delivery
from keyvault.service.limit_terms import RateTerms, UsageTerms
from tests.conftest import PASSWORD

WIDTHS = (360, 390, 1280)
HEIGHT = 800
ORIGIN = service.Origin("203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                       "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
LONG_LABEL = "Deploys from the nightly-build-and-release pipeline"  # 51: longer than allowed
PERSON = "a.person.with.a.rather.long.address@subdomain.example.com"
ADMIN = "admin@example.com"


@dataclass
class World:
    """What the pages show: a person with keys of every kind, an admin, and a browser page."""

    page: object
    person: object
    keys: dict[str, object]
    confirming_url: str  # a server that asks new accounts to confirm their address

    def log_in(self, email: str = PERSON) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/settings/api-keys")


@pytest.fixture
def world(page, live_server, confirming_server, make_user, make_key) -> World:
    person = make_user(PERSON)
    make_user(ADMIN, is_admin=True)
    # an organisation with a long name: a row in the admin page's organisations table
    service.organizations.create_organization(person, LONG_LABEL[:64], service.Origin())
    now = clock.now()
    keys = {
        "everything": make_key(person, label=LONG_LABEL[:40], scopes=["*"],
                               description="Used by the release job; rolls every quarter.")[0],
        "narrow": make_key(person, label="Reader", scopes=[
            "personal_api_key:read", "personal_api_key:write", "user:read", "key:verify"],
            expires_at=now + timedelta(days=3))[0],
        "revoked": make_key(person, label="Old laptop", scopes=["user:read"])[0],
        "rolled": make_key(person, label="Grafana", scopes=["key:verify"],
                           expires_at=now + timedelta(days=90))[0],
    }
    service.revoke_key(person, keys["revoked"].public_id, ORIGIN)
    service.roll_key(person, keys["rolled"].public_id, origin=ORIGIN, grace_period_seconds=3600)
    service.check_password(person, "not the password", ORIGIN)  # a failed login in the log
    return World(page, person, keys, confirming_server.url)


# ---------------------------------------------------------------- the pages


def landing(w: World) -> None:
    w.page.goto("/")


def signup(w: World) -> None:
    w.page.goto("/signup")


def signup_with_errors(w: World) -> None:
    w.page.goto("/signup")
    w.page.get_by_label("Email").fill("not-an-address")
    w.page.get_by_role("button", name="Create account").click()
    w.page.locator(".error").first.wait_for()


def signup_check_mail(w: World) -> None:
    """The one answer to a sign-up when addresses are confirmed by mail."""
    w.page.goto(f"{w.confirming_url}/signup")
    w.page.get_by_label("Email").fill(PERSON)
    w.page.get_by_label("Password", exact=True).fill(PASSWORD)
    w.page.get_by_label("Repeat password").fill(PASSWORD)
    w.page.get_by_role("button", name="Create account").click()
    w.page.get_by_role("heading", name="Check your mail").wait_for()


def confirm_email(w: World) -> None:
    """The confirmation link's page, for an account that has not confirmed its address."""
    newcomer = service.sign_up(f"new.{PERSON}", PASSWORD, ORIGIN)
    w.page.goto(f"{w.confirming_url}/signup/confirm?token={confirmations.make_token(newcomer)}")
    w.page.get_by_role("heading", name="Confirm your address").wait_for()


def login(w: World) -> None:
    w.page.goto("/login")


def confirm_password(w: World) -> None:
    w.log_in()
    w.page.goto("/confirm?next=/settings/account")


def keys_empty(w: World) -> None:
    w.log_in(ADMIN)  # the admin owns no keys


def keys_listed(w: World) -> None:
    w.log_in()


def new_key_shown_once(w: World) -> None:
    w.log_in()
    w.page.get_by_label("Label").fill("Phone-made key")
    w.page.locator('input[name="preset"][value="read_only"]').check()
    w.page.get_by_role("button", name="Create key").click()
    w.page.get_by_test_id("new-key-value").wait_for()


def edit_key(w: World) -> None:
    w.log_in()
    w.page.goto(f"/settings/api-keys/{w.keys['narrow'].public_id}/edit")


def key_page(w: World) -> None:
    w.log_in()
    w.page.goto(f"/settings/api-keys/{w.keys['rolled'].public_id}")
    w.page.get_by_test_id("usage-table").wait_for(state="attached")


def new_key_with_limits(w: World) -> None:
    """The create form with its limits open and filled in."""
    w.log_in()
    w.page.get_by_test_id("limit-fields").locator("summary").click()
    w.page.get_by_label("Uses allowed").fill("1000000")
    w.page.get_by_label("Refilled").select_option("monthly")


def key_page_with_limits(w: World) -> None:
    """A key page with a rate and a quota, and the edit form that shows them."""
    key, value = service.create_key(
        w.person, label="Trial partner", scopes=["user:read"], origin=ORIGIN,
        rate_limit=RateTerms(100, 60), usage_limit=UsageTerms(1000, 1000, "monthly", 1))
    service.verify_key(value)
    w.log_in()
    w.page.goto(f"/settings/api-keys/{key.public_id}")
    w.page.get_by_test_id("usage-limit").wait_for()


def edit_key_with_limits(w: World) -> None:
    key_page_with_limits(w)
    w.page.get_by_role("link", name="Edit").click()
    w.page.get_by_test_id("limit-fields").wait_for()


def roll_step(w: World) -> None:
    w.log_in()
    w.page.goto(f"/settings/api-keys/{w.keys['narrow'].public_id}/roll")


def security_log(w: World) -> None:
    w.log_in()
    w.page.goto("/settings/security-log")


def account(w: World) -> None:
    w.log_in()
    w.page.goto("/settings/account")


def two_factor_setup(w: World) -> None:
    w.log_in()
    w.page.goto("/settings/two-factor/setup")
    w.page.get_by_test_id("totp-qr").wait_for()


def recovery_codes(w: World) -> None:
    two_factor_setup(w)
    secret = w.page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    w.page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).now())
    w.page.get_by_role("button", name="Turn on two-factor authentication").click()
    w.page.get_by_test_id("recovery-codes").wait_for()


def two_factor_login(w: World) -> None:
    """The login's second step, after a right password."""
    secret = service.second_factor.pending_secret(w.person)
    service.second_factor.enable(w.person, pyotp.TOTP(secret).now(), ORIGIN)
    w.page.goto("/login")
    w.page.get_by_label("Email").fill(PERSON)
    w.page.get_by_label("Password").fill(PASSWORD)
    w.page.get_by_role("button", name="Log in").click()
    w.page.wait_for_url("**/login/two-factor")


def account_with_passkeys(w: World) -> None:
    from keyvault.extensions import db
    from keyvault.factor_models import Passkey

    for number, name in enumerate(("Work laptop", LONG_LABEL[:40])):
        db.session.add(Passkey(user_id=w.person.id, credential_id=f"credential-{number}",
                               public_key=b"not used here", name=name, backed_up=number == 1,
                               last_used_at=clock.now() if number else None))
    db.session.commit()
    account(w)


def new_passkey(w: World) -> None:
    w.log_in()
    w.page.goto("/settings/passkeys/new")


def keys_filtered(w: World) -> None:
    """The list controls with a query in place, and the bulk-revoke control."""
    w.log_in()
    w.page.goto("/settings/api-keys?q=e&status=active&scope=user:read&sort=label")


def bulk_revoke_confirmation(w: World) -> None:
    w.log_in()
    w.page.get_by_label("Select “Reader”").check()
    w.page.get_by_label(f"Select “{LONG_LABEL[:40]}”").check()
    w.page.get_by_test_id("bulk-revoke").click()
    w.page.get_by_test_id("revoke-list").wait_for()


def security_log_filtered(w: World) -> None:
    w.log_in()
    w.page.goto(f"/settings/security-log?kind=key.created&key={w.keys['narrow'].public_id}"
                f"&since={clock.now().date().isoformat()}")


def admin_keys(w: World) -> None:
    w.log_in(ADMIN)
    w.page.goto("/admin/keys")


def not_found(w: World) -> None:
    w.page.goto("/no/such/page")


def forbidden(w: World) -> None:
    w.log_in()
    w.page.goto("/admin/keys")


def api_docs(w: World) -> None:
    w.page.goto("/api/docs/")


def api_docs_signed_in(w: World) -> None:
    w.log_in()
    w.page.goto("/api/docs/")


HOOK_URL = "http://127.0.0.1:9/keyvault/events/from-the-release-pipeline-and-the-nightly-builds"


def webhooks_listed(w: World) -> None:
    service.webhooks.create_webhook(w.person, HOOK_URL, ["key.created", "key.revoked"],
                                    origin=ORIGIN)
    w.log_in()
    w.page.goto("/settings/webhooks")


def webhook_deliveries(w: World) -> None:
    """One endpoint's page: a delivery sent, one that keeps failing with a long error."""
    hook = service.webhooks.create_webhook(w.person, HOOK_URL, ["key.revoked"],
                                           origin=ORIGIN).webhook
    sent = webhook_delivery.enqueue(hook, "key.revoked", {"key": {"id": "x"}})
    sent.sent_at, sent.attempts, sent.status_code, sent.duration_ms = clock.now(), 1, 204, 38
    failing = webhook_delivery.enqueue(hook, "webhook.test", {})
    failing.attempts, failing.status_code = 3, 503
    failing.last_error = "DeliveryFailed: answered 503 " + "x" * 80
    db.session.commit()
    w.log_in()
    w.page.goto(f"/settings/webhooks/{hook.public_id}")


def _team(w: World, role: str = "owner"):
    """An organisation where the person is `role`: an admin, a member, a service account with
    keys and a pending invitation. (organisation, service account)"""
    orgs, accounts = service.organizations, service.service_accounts
    founder = w.person if role == "owner" else service.sign_up(
        f"founder.{PERSON}", PASSWORD, ORIGIN, confirmed=True)
    org = orgs.create_organization(founder, "Platform team of the payments department",
                                   ORIGIN).organization
    for number, each in enumerate(("admin", "member")):
        someone = w.person if each == role else service.sign_up(
            f"{each}{number}.{PERSON}", PASSWORD, ORIGIN, confirmed=True)
        orgs.add_member(org, someone, each, ORIGIN)
    account = accounts.create_service_account(founder, org.public_id, ORIGIN,
                                              name="nightly-release-pipeline-deployer",
                                              description="Ships the nightly build.")
    for label in (LONG_LABEL[:40], "Grafana"):
        accounts.create_account_key(founder, org.public_id, account.public_id, ORIGIN,
                                    label=label, scopes=["key:verify"])
    service.invitations.invite(founder, org.public_id, f"invited.{PERSON}", "admin", ORIGIN)
    return org, account


def organizations(w: World) -> None:
    w.log_in()
    w.page.goto("/settings/organizations")


def organization_as_owner(w: World) -> None:
    org, _ = _team(w)
    w.log_in()
    w.page.goto(f"/settings/organizations/{org.public_id}")


def organization_as_member(w: World) -> None:
    org, _ = _team(w, "member")
    w.log_in()
    w.page.goto(f"/settings/organizations/{org.public_id}")


def service_account_keys(w: World) -> None:
    org, account = _team(w)
    w.log_in()
    w.page.goto(f"/settings/organizations/{org.public_id}/service-accounts/{account.public_id}")


def invitation(w: World) -> None:
    """The invitation link, opened signed out."""
    org, _ = _team(w)
    invited = service.invitations.invite(w.person, org.public_id, f"new.{PERSON}", "member",
                                         ORIGIN)
    w.page.goto("/organizations/invitations/" + service.invitations.token_for(invited))


def _billing(w: World):
    org = service.organizations.all_organizations()[0]
    made = service.services.create_service(
        w.person, org.public_id, ORIGIN, name="Billing",
        audience="https://billing.internal.example.com/api/invoices-and-payments",
        description="Invoices, payments and refunds for every team.",
        scopes=[{"name": "invoice:read", "description": "Read invoices and their line items"},
                {"name": "invoice_adjustment:write", "description": "Issue credit notes"}])
    return org, made


def organization_services(w: World) -> None:
    org, _ = _billing(w)
    w.log_in()
    w.page.goto(f"/settings/organizations/{org.public_id}/services")


def service_page_new_verify_key(w: World) -> None:
    org, made = _billing(w)
    w.log_in()
    w.page.goto(f"/settings/organizations/{org.public_id}/services/{made.public_id}")
    w.page.get_by_label("Label").fill(LONG_LABEL[:40])
    w.page.get_by_role("button", name="Create verify key").click()
    w.page.get_by_test_id("new-key-value").wait_for()


SCREENS: list[Callable[[World], None]] = [
    landing, signup, signup_with_errors, signup_check_mail, confirm_email, login, confirm_password,
    keys_empty, keys_listed,
    new_key_shown_once, edit_key, key_page, roll_step,
    new_key_with_limits, key_page_with_limits, edit_key_with_limits, security_log, account,
    account_with_passkeys, new_passkey, admin_keys, keys_filtered, bulk_revoke_confirmation,
    security_log_filtered, not_found, forbidden, two_factor_setup, recovery_codes, two_factor_login,
    api_docs, api_docs_signed_in, webhooks_listed, webhook_deliveries, organizations,
    organization_as_owner, organization_as_member, service_account_keys, invitation,
    organization_services, service_page_new_verify_key,
]


# ---------------------------------------------------------------- the checks


@pytest.fixture
def policies(page) -> list[str | None]:
    """The Content-Security-Policy of every page (document) the browser loaded."""
    found: list[str | None] = []
    page.on("response", lambda r: found.append(r.headers.get("content-security-policy"))
            if r.request.resource_type == "document" else None)
    return found


@pytest.fixture
def failed_loads(page) -> list[str]:
    """Every resource other than the page itself that answered with an error (a favicon 404...)."""
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    # A load the next navigation cancels (ERR_ABORTED) did not fail; any other failure did.
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url}: {r.failure}")
            if "ERR_ABORTED" not in (r.failure or "") else None)
    return failures


NEXT_FRAME = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
OVERFLOWING = """() => {
    const width = window.innerWidth;
    const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
    const inScroller = e => { for (let p = e.parentElement; p; p = p.parentElement)
        if (scrolls(p)) return true; return false; };
    return [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > width + 0.5 && !inScroller(e))
        .slice(0, 5)
        .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                  + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');
}"""


# Every word (a run of letters and digits) of the tables' text, and of badges and codes, lies on
# one line: a break may come at a space or after punctuation (`.`, `@`, `:`, `_`, `/`), never
# inside "address" or "active".
BROKEN_WORDS = r"""() => {
    const broken = [];
    const walker = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (!node.parentElement.closest('table, .badge, code, .pager, .filters')) continue;
        if (!node.parentElement.getClientRects().length) continue;  // not shown (collapsed)
        for (const match of node.textContent.matchAll(/[\p{L}\p{N}]{2,}/gu)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
                                 .map(r => Math.round(r.top)));
            if (tops.size > 1) broken.push(match[0]);
        }
    }
    return broken.slice(0, 10);
}"""
TABLE_SCREENS = {keys_listed, keys_filtered, bulk_revoke_confirmation, key_page, security_log,
                 security_log_filtered, admin_keys, account_with_passkeys, organization_as_owner,
                 service_account_keys}
SERIOUS = {"serious", "critical"}
AXE = Axe()
# The same page as another screen's but for the signed-in top bar, which every signed-in screen
# has axe check: its 23,000 elements take axe some 20 s a run, so it is checked for fit only.
AXE_ELSEWHERE = {api_docs_signed_in}


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: s.__name__)
def test_page_fits_the_screen_and_passes_axe_in_both_schemes(world, failed_loads, policies,
                                                            screen):
    """One visit a page, checked as a person would meet it at each size and scheme:
    - at 360, 390 and 1280 px it is no wider than the window: nothing scrolls sideways;
    - on the pages with tables, no word in a table, badge or code is split across two lines;
    - axe-core finds no serious or critical violation (contrast included), wide and narrow, in
      the light and the dark scheme, on the page as served: under its Content-Security-Policy;
    - nothing it loads (logo, favicon, style, script) fails."""
    world.page.set_viewport_size({"width": WIDTHS[-1], "height": HEIGHT})
    screen(world)
    world.page.wait_for_load_state("load")
    too_wide, broken = {}, {}
    for width in WIDTHS:
        world.page.set_viewport_size({"width": width, "height": HEIGHT})
        world.page.evaluate(NEXT_FRAME)  # measured as drawn at this width, not mid-resize
        scroll_width, inner_width = world.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll_width > inner_width:
            too_wide[width] = (scroll_width, world.page.evaluate(OVERFLOWING))
        if screen in TABLE_SCREENS and (found := world.page.evaluate(BROKEN_WORDS)):
            broken[width] = found
    assert too_wide == {}
    assert broken == {}
    if screen not in AXE_ELSEWHERE:
        for color_scheme in ("light", "dark"):
            world.page.emulate_media(color_scheme=color_scheme)
            assert world.page.evaluate(
                f"matchMedia('(prefers-color-scheme: {color_scheme})').matches")
            for width in (WIDTHS[-1], WIDTHS[1]):
                world.page.set_viewport_size({"width": width, "height": HEIGHT})
                results = AXE.run(world.page)
                serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5])
                           for v in results.response["violations"] if v["impact"] in SERIOUS]
                assert serious == [], f"{color_scheme} scheme at {width} px"
        assert results.response["testEngine"]["name"] == "axe-core"  # it really ran
    assert "script-src 'self'" in policies[-1]
    assert failed_loads == []


@pytest.mark.parametrize("screen", [signup, keys_listed, not_found, api_docs],
                         ids=lambda s: s.__name__)
def test_logo_and_favicon_load(world, screen):
    """The brand is an SVG logo (no emoji that needs a font); the linked favicon and
    /favicon.ico both load."""
    screen(world)
    logo = world.page.locator(".topbar .brand img")
    assert logo.evaluate("img => img.complete && img.naturalWidth > 0")
    assert logo.get_attribute("src").endswith(".svg")
    assert "🔑" not in world.page.locator(".topbar").inner_text()
    icon = world.page.locator('link[rel="icon"]').get_attribute("href")
    answer = world.page.request.get(icon)
    assert (answer.status, answer.headers["content-type"]) == (200, "image/svg+xml; charset=utf-8")
    answer = world.page.request.get("/favicon.ico")
    assert answer.status == 200
    assert answer.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file


# ---------------------------------------------------------------- words stay whole

LINES_OF_TEXT = """e => {
    const range = document.createRange();
    range.selectNodeContents(e);
    return new Set([...range.getClientRects()].filter(r => r.width > 0)
                   .map(r => Math.round(r.top))).size;
}"""


def test_admin_tables_at_1280_px_keep_addresses_and_badges_whole(world):
    """At 1280 px the admin tables show a long address on one line, and no badge (`active`,
    `revoked`), mask or scope breaks mid-word, with every column still in view (no scrolling
    inside the card)."""
    world.page.set_viewport_size({"width": WIDTHS[-1], "height": HEIGHT})
    admin_keys(world)
    cells = world.page.locator('td[data-label="User"], td[data-label="Email"]')
    words = world.page.locator("td .badge, td code")
    assert cells.count() >= 6 and words.count() >= 12
    addresses = cells.evaluate_all("cells => cells.map(c => c.textContent.trim())")
    assert PERSON in addresses
    for locator in (cells, words):
        lines = locator.evaluate_all(f"found => found.map({LINES_OF_TEXT})")
        assert lines == [1] * len(lines), list(zip(lines, locator.all_inner_texts(), strict=True))
    assert world.page.locator(".card").evaluate_all(
        "cards => cards.filter(c => c.scrollWidth > c.clientWidth).length") == 0
