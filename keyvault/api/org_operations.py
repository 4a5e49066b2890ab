"""The OpenAPI document's organisation operations (keyvault.api.organizations and
.service_accounts), their path parameters and examples; keyvault.api.openapi merges them into
the document beside keyvault.api.operations' ones."""

from __future__ import annotations

from ..service.scopes import VERIFY
from .examples import EXAMPLE_HOST
from .operations import _json, _json_body, _media, _operation, _ref

EXAMPLE_ORG_ID = "Org4Kx9WbT2qLmZs"
EXAMPLE_SA_ID = "Sa7Hn3VcQ8pRtYwE"
EXAMPLE_INVITATION_ID = "Inv2Jd6FgK9sMxQa"
_WHEN = "2026-11-02T09:41:27Z"
ORGS_TAG = "Organisations"
SA_TAG = "Service accounts"
RULES = ("\n\nWho may: owners everything; admins service accounts, their keys, invitations and "
         "members other than owners; members read. A service account's key acts only in its "
         "own organisation, reading it and managing service accounts and their keys, as its "
         "scopes and the policy allow. Another organisation's ids answer 404; a role that does "
         "not reach, 403 (`code: not_allowed`).")


def parameters() -> dict:
    text = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}
    return {
        "OrgId": {"name": "org_id", "in": "path", "required": True, "schema": text,
                  "description": "The organisation's public id.", "example": EXAMPLE_ORG_ID},
        "ServiceAccountId": {"name": "sa_id", "in": "path", "required": True, "schema": text,
                             "description": "The service account's public id.",
                             "example": EXAMPLE_SA_ID},
        "MemberId": {"name": "user_id", "in": "path", "required": True,
                     "schema": {"type": "integer"}, "example": 42,
                     "description": "The member's user id (your own to leave)."},
        "InvitationId": {"name": "invitation_id", "in": "path", "required": True,
                         "schema": text, "example": EXAMPLE_INVITATION_ID,
                         "description": "The pending invitation's id."},
    }


def examples(ex: dict) -> dict:
    """The organisation examples, telling the same story as the others (Ada, her CI key)."""
    policy = {"max_key_lifetime_days": 90, "allowed_scopes": None,
              "revoke_unused_after_days": None}
    organization = {"id": EXAMPLE_ORG_ID, "name": "Acme platform team", "role": "owner",
                    "is_active": True, "created_at": _WHEN, "policy": policy}
    ada = {"id": 42, "email": "ada@example.com"}
    account = {"id": EXAMPLE_SA_ID, "name": "deploy-bot", "description": "Ships releases.",
               "created_at": _WHEN, "created_by": ada}
    key = {**ex["key"], "exceeds_policy": []}
    invitation = {"id": EXAMPLE_INVITATION_ID, "email": "grace@example.com", "role": "admin",
                  "created_at": _WHEN, "expires_at": "2026-11-09T09:41:27Z"}
    event = {**ex["event_page"]["results"][1], "user": ada}
    return {
        "organization": organization, "organization_page": {
            "next": None, "previous": None, "results": [organization]},
        "member": {"user": ada, "role": "owner", "created_at": _WHEN},
        "member_page": {"next": None, "previous": None, "results": [
            {"user": ada, "role": "owner", "created_at": _WHEN}]},
        "invitation": invitation,
        "invitation_page": {"next": None, "previous": None, "results": [invitation]},
        "account": account,
        "account_page": {"next": None, "previous": None, "results": [account]},
        "sa_key": key, "sa_created": {**ex["created"], "exceeds_policy": []},
        "sa_rolled": {**ex["rolled"], "exceeds_policy": []},
        "sa_updated": {**ex["updated"], "exceeds_policy": []},
        "sa_key_page": {"next": f"{EXAMPLE_HOST}/api/organizations/{EXAMPLE_ORG_ID}/"
                                f"service_accounts/{EXAMPLE_SA_ID}/keys/?limit=20&cursor="
                                "MjAyNi0xMS0wMlQwOTo0MToyN1p8MTI",
                        "previous": None, "results": [key]},
        "event_page": {"next": None, "previous": None, "results": [event]},
    }


def paths(read: str, write: str, ex: dict) -> dict:
    o = examples(ex)
    org, sa = _ref("parameters", "OrgId"), _ref("parameters", "ServiceAccountId")
    key_id, member = _ref("parameters", "KeyId"), _ref("parameters", "MemberId")
    page = [_ref("parameters", "Limit"), _ref("parameters", "Cursor")]
    gone = {"204": {"description": "Done."}}
    no_store = {"Cache-Control": _ref("headers", "NoStore")}
    keys = "/api/organizations/{org_id}/service_accounts/{sa_id}/keys/"

    def op(operation_id, tag, summary, description, scope, responses, **more):
        more.setdefault("errors", ("NotFound",))
        return _operation(operation_id, tag, summary, description + RULES, scope, responses,
                          **more)

    return {
        "/api/organizations/": {
            "get": op("listOrganizations", ORGS_TAG, "Your organisations",
                      "The organisations the key's owner belongs to, with their role, newest "
                      "membership first (a service account's key: its own organisation).", read,
                      {"200": _json("OrganizationPage", "One page.", _media(o["organization_page"]))},
                      parameters=page, errors=()),
            "post": op("createOrganization", ORGS_TAG, "Create an organisation",
                       "The key's owner becomes its first owner (a person's key only).", write,
                       {"201": _json("Organization", "The new organisation.",
                                     _media(o["organization"]))},
                       body=_json_body("CreateOrganization", "Its name.",
                                       {"name": "Acme platform team"}, required=True),
                       errors=("UnsupportedMediaType",)),
        },
        "/api/organizations/{org_id}/": {
            "parameters": [org],
            "get": op("getOrganization", ORGS_TAG, "One organisation", "With its policy.", read,
                      {"200": _json("Organization", "The organisation.", _media(o["organization"]))}),
            "patch": op("updateOrganization", ORGS_TAG, "Rename it or change its policy",
                        "Owners only. A policy change never widens or shortens a key already "
                        "issued; keys that exceed it say so in `exceeds_policy`. 409 when the "
                        "instance's administrator deactivated it.", write,
                        {"200": _json("Organization", "After the change.", _media(o["organization"]))},
                        body=_json_body("UpdateOrganization", "The fields to change.",
                                        {"max_key_lifetime_days": 90}),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("deleteOrganization", ORGS_TAG, "Delete an organisation",
                         "Owners only. Its service accounts and their keys go with it: those "
                         "keys answer `not_found` from the next verify on.", write, gone,
                         errors=("NotFound", "Conflict")),
        },
        "/api/organizations/{org_id}/log/": {"parameters": [org], "get": op(
            "listOrganizationEvents", ORGS_TAG, "The organisation's log",
            "Members joining, leaving and changing roles, invitations, policy, service accounts "
            "and their keys, newest first, with who acted (`user`, or `actor_key`).", read,
            {"200": _json("OrganizationEventPage", "One page.", _media(o["event_page"]))},
            parameters=page)},
        "/api/organizations/{org_id}/members/": {"parameters": [org], "get": op(
            "listMembers", ORGS_TAG, "Members", "Everyone in it, with their role.", read,
            {"200": _json("MemberPage", "One page.", _media(o["member_page"]))},
            parameters=page)},
        "/api/organizations/{org_id}/members/{user_id}/": {
            "parameters": [org, member],
            "patch": op("changeRole", ORGS_TAG, "Change a member's role",
                        "Only owners make or unmake owners; the last owner cannot be demoted "
                        "(409).", write,
                        {"200": _json("Member", "After the change.", _media(o["member"]))},
                        body=_json_body("ChangeRole", "The new role.", {"role": "owner"},
                                        required=True),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("removeMember", ORGS_TAG, "Remove a member, or leave",
                         "Their rights end on their next request; their personal keys and the "
                         "service accounts' keys are untouched. The last owner cannot leave "
                         "(409).", write, gone, errors=("NotFound", "Conflict")),
        },
        "/api/organizations/{org_id}/invitations/": {
            "parameters": [org],
            "get": op("listInvitations", ORGS_TAG, "Pending invitations",
                      "Owners and admins.", read,
                      {"200": _json("InvitationPage", "One page.", _media(o["invitation_page"]))},
                      parameters=page),
            "post": op("invite", ORGS_TAG, "Invite someone by e-mail",
                       "Mails a link that works once, for 7 days, for an account with that "
                       "address (one can sign up on the spot). The answer is the same whether "
                       "or not the address has an account. Only owners invite owners.", write,
                       {"201": _json("Invitation", "The pending invitation.",
                                     _media(o["invitation"]))},
                       body=_json_body("Invite", "Who, as what.",
                                       {"email": "grace@example.com", "role": "admin"},
                                       required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        "/api/organizations/{org_id}/invitations/{invitation_id}/": {
            "parameters": [org, _ref("parameters", "InvitationId")],
            "delete": op("revokeInvitation", ORGS_TAG, "Revoke an invitation",
                         "Its link stops working.", write, gone,
                         errors=("NotFound", "Conflict")),
        },
        "/api/invitations/accept/": {"post": op(
            "acceptInvitation", ORGS_TAG, "Accept an invitation",
            "Joins the key's owner (a person whose address was invited) with the invitation's "
            "role, once; 400 for a link altered, expired, used or revoked, 403 for another "
            "address.", write,
            {"200": _json("Organization", "The organisation joined.", _media(
                {**o["organization"], "role": "admin"}))},
            body=_json_body("AcceptInvitation", "The token from the link.",
                            {"invitation_token": "Ikludj…"}, required=True),
            errors=("Conflict", "UnsupportedMediaType"))},
        "/api/organizations/{org_id}/service_accounts/": {
            "parameters": [org],
            "get": op("listServiceAccounts", SA_TAG, "Service accounts", "Newest first.", read,
                      {"200": _json("ServiceAccountPage", "One page.", _media(o["account_page"]))},
                      parameters=page),
            "post": op("createServiceAccount", SA_TAG, "Create a service account",
                       "A non-human identity of the organisation: it cannot log in, and its "
                       "keys outlive any person.", write,
                       {"201": _json("ServiceAccount", "The new service account.",
                                     _media(o["account"]))},
                       body=_json_body("CreateServiceAccount", "Its name and description.",
                                       {"name": "deploy-bot", "description": "Ships releases."},
                                       required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        "/api/organizations/{org_id}/service_accounts/{sa_id}/": {
            "parameters": [org, sa],
            "get": op("getServiceAccount", SA_TAG, "One service account", "", read,
                      {"200": _json("ServiceAccount", "It.", _media(o["account"]))}),
            "patch": op("updateServiceAccount", SA_TAG, "Rename or describe it", "", write,
                        {"200": _json("ServiceAccount", "After the change.", _media(o["account"]))},
                        body=_json_body("UpdateServiceAccount", "The fields to change.",
                                        {"description": "Ships releases to production."}),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("deleteServiceAccount", SA_TAG, "Delete a service account",
                         "Its keys go with it: they answer `not_found` from the next verify "
                         "on.", write, gone, errors=("NotFound", "Conflict")),
        },
        keys: {
            "parameters": [org, sa],
            "get": op("listServiceAccountKeys", SA_TAG, "Its keys",
                      "Newest first, never their values.", read,
                      {"200": _json("ServiceAccountKeyPage", "One page.", _media(o["sa_key_page"]))},
                      parameters=[*page, _ref("parameters", "IncludeRevoked")]),
            "post": op("createServiceAccountKey", SA_TAG, "Create a key for it",
                       "As for a person's key (the value in this answer only), within the "
                       "policy's scopes and lifetime and KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT "
                       "live keys (409).", write,
                       {"201": _json("ServiceAccountKeyWithValue", "The new key, with its value.",
                                     _media(o["sa_created"]), {**no_store, "Location": {
                                         "required": True, "schema": {"type": "string"},
                                         "description": "The new key's URL."}})},
                       body=_json_body("CreateKey", "The new key's fields.", {
                           "label": "CI deploys", "scopes": [VERIFY],
                           "expires_at": ex["expires"]}, required=True),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
        keys + "{public_id}/": {
            "parameters": [org, sa, key_id],
            "get": op("getServiceAccountKey", SA_TAG, "One of its keys", "", read,
                      {"200": _json("ServiceAccountKey", "The key.", _media(o["sa_key"]))}),
            "patch": op("updateServiceAccountKey", SA_TAG, "Edit one of its keys",
                        "Label, description, or narrower scopes.", write,
                        {"200": _json("ServiceAccountKey", "After the change.",
                                      _media(o["sa_updated"]))},
                        body=_json_body("UpdateKey", "The fields to change.",
                                        {"label": "CI deploys (production)"}),
                        errors=("NotFound", "Conflict", "UnsupportedMediaType")),
            "delete": op("revokeServiceAccountKey", SA_TAG, "Revoke one of its keys",
                         "At once, everywhere; verify answers `revoked`.", write, gone,
                         errors=("NotFound", "Conflict")),
        },
        keys + "{public_id}/roll/": {
            "parameters": [org, sa, key_id],
            "post": op("rollServiceAccountKey", SA_TAG, "Give one of its keys a new value",
                       "As for a person's key. The policy as it is now applies: a key holding "
                       "a scope it no longer allows cannot be rolled (403), and the expiry is "
                       "brought within its lifetime.", write,
                       {"200": _json("ServiceAccountKeyWithValue", "The key with its new value.",
                                     _media(o["sa_rolled"]), no_store)},
                       body=_json_body("RollKey", "Optional.", {"grace_period_seconds": 3600},
                                       form="FormCredential"),
                       errors=("NotFound", "Conflict", "UnsupportedMediaType")),
        },
    }

