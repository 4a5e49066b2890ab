"""A quota's owner hears of it twice a period, through the outbox and a real SMTP server: once
when it falls below 10%, once when it is used up; never twice, however many uses race. A
service account's key or pool is told to its organisation's owners and admins."""

from __future__ import annotations

import threading
from datetime import timedelta

from keyvault import clock, service
from keyvault.service import notifications
from keyvault.service.limit_terms import UsageTerms
from tests.conftest import send_mail, text_of
from tests.org_world import ORIGIN, build

LOW = "has less than 10% of its usage quota left"
USED_UP = "has used up its usage quota"


def quota_mails(app, smtp_server) -> list[tuple[str, str]]:
    """Send the outbox; the quota mails that arrived now, as (to, subject), sorted."""
    before = len(smtp_server.messages)
    report = send_mail(app)
    arrived = smtp_server.wait_for(before + report.sent)[before:]
    return sorted((m["To"], m["Subject"]) for m in arrived if "usage quota" in m["Subject"])


def uses(app, value: str, count: int) -> list[str]:
    return [service.verify_key(value).code for _ in range(count)]


def test_each_threshold_mails_the_owner_once_a_period(app, make_user, make_key, smtp_server,
                                                      frozen):
    owner = make_user("owner@example.com")
    key, value = make_key(owner, label="trial", usage_limit=UsageTerms(20, 20, "daily"))
    send_mail(app)  # the key-created notice
    assert uses(app, value, 22).count("usage_exceeded") == 2
    mails = quota_mails(app, smtp_server)
    assert mails == [("owner@example.com", f"KeyVault: the key “trial” {LOW}"),
                     ("owner@example.com", f"KeyVault: the key “trial” {USED_UP}")]
    [low] = [m for m in smtp_server.messages if LOW in m["Subject"]]
    assert "1 of 20 uses left" in text_of(low)
    assert f"/settings/api-keys/{key.public_id}" in text_of(low)
    assert uses(app, value, 3) == ["usage_exceeded"] * 3
    assert quota_mails(app, smtp_server) == []
    frozen.at += timedelta(days=1)  # the next period: refilled, and each threshold again
    assert uses(app, value, 21).count("valid") == 20
    assert len(quota_mails(app, smtp_server)) == 2


def test_a_quota_already_below_10_percent_warns_at_its_first_use_then_not_again(
        app, make_user, make_key, smtp_server, frozen):
    """Set low from the start (5 left of a daily refill of 100): nothing is crossed, yet the
    owner hears once, at the first use, and again in the next period only if it falls so low."""
    owner = make_user("owner@example.com")
    _, value = make_key(owner, label="trial", usage_limit=UsageTerms(5, 100, "daily"))
    send_mail(app)
    assert uses(app, value, 2) == ["valid", "valid"]
    assert quota_mails(app, smtp_server) == [
        ("owner@example.com", f"KeyVault: the key “trial” {LOW}")]
    assert uses(app, value, 2) == ["valid", "valid"]
    assert quota_mails(app, smtp_server) == []
    frozen.at += timedelta(days=1)  # refilled to 100: far from 10%, so no mail this period
    assert uses(app, value, 5) == ["valid"] * 5
    assert quota_mails(app, smtp_server) == []


def test_racing_uses_mail_each_threshold_exactly_once(app, make_user, make_key, smtp_server):
    owner = make_user("owner@example.com")
    _, value = make_key(owner, usage_limit=UsageTerms(20))
    send_mail(app)
    codes: list[str] = []

    def use() -> None:  # eight threads (the hot path holds a connection per thread), 40 uses
        with app.app_context():
            codes.extend(uses(app, value, 5))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(codes) == ["usage_exceeded"] * 20 + ["valid"] * 20
    assert quota_mails(app, smtp_server) == [
        ("owner@example.com", f"KeyVault: the key “test key” {LOW}"),
        ("owner@example.com", f"KeyVault: the key “test key” {USED_UP}")]
    # the claim itself, raced: one of eight racing callers queues the mail for a period
    limits_id = service.get_key(owner, service.list_keys(owner)[0].public_id).limits.id
    won: list[bool] = []

    def claim() -> None:
        with app.app_context():
            won.append(notifications.quota_reached(limits_id, "low", "2030-01-01",
                                                   clock.now()))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won) == [False] * 7 + [True]
    assert len(quota_mails(app, smtp_server)) == 1


def test_a_service_accounts_pool_is_told_to_its_owners_and_admins(app, make_user, smtp_server):
    world = build(make_user, roles=("owner", "admin", "member", "outsider"))
    service.service_accounts.update_service_account(
        world.people["owner"], world.org, world.sa, ORIGIN, usage_limit=UsageTerms(20))
    send_mail(app)
    assert uses(app, world.sa_value, 20) == ["valid"] * 20
    mails = quota_mails(app, smtp_server)
    assert [to for to, _ in mails] == ["admin@example.com"] * 2 + ["owner@example.com"] * 2
    assert {subject for _, subject in mails} == {f"KeyVault: the pool of “deploy-bot” {LOW}",
                                                f"KeyVault: the pool of “deploy-bot” {USED_UP}"}
