"""Removal from an organisation takes effect on the very next request, in every worker of a
real `keyvault serve` (two workers; nothing about membership is held in a process)."""

from __future__ import annotations

import requests

from keyvault import service
from tests.org_world import ORIGIN, build

REQUESTS = 16  # new connections each: spread over both workers


def statuses(url: str, headers: dict) -> set[int]:
    return {requests.get(url, headers=headers, timeout=10).status_code for _ in range(REQUESTS)}


def test_a_removed_member_loses_access_on_the_next_request_in_every_worker(live_server,
                                                                            make_user):
    world = build(make_user)
    org_url = f"{live_server.url}/api/organizations/{world.org}/service_accounts/"
    member = world.headers("member")
    assert statuses(org_url, member) == {200}
    service.organizations.remove_member(world.people["owner"], world.org,
                                        world.people["member"].id, ORIGIN)
    assert statuses(org_url, member) == {404}
    own_keys = f"{live_server.url}/api/personal_api_keys/"
    assert statuses(own_keys, member) == {200}  # their personal keys are untouched
    sa_answer = requests.get(f"{live_server.url}/api/forward_auth/",
                             headers=world.headers("service_account"), timeout=10)
    assert sa_answer.headers["X-KeyVault-Organization-Id"] == world.org
