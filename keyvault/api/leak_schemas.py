"""The leaked-key report's models (GitHub's secret scanning partner program format): the matches
a reporter sends and the label KeyVault answers for each; like .schemas, they parse the request
and generate the OpenAPI document's components."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from .. import service
from .inputs import _Request

TOKEN_MAX, URL_MAX, NAME_MAX, REPORT_MAX = 256, 2048, 100, 1000


class FoundToken(_Request):
    """One match in a leaked-key report (GitHub's secret scanning format). Fields GitHub may
    add later are ignored."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=TOKEN_MAX, description="The text found in public.")
    type: str = Field(max_length=NAME_MAX, description=(
        "The reporter's name for the pattern that matched, e.g. `keyvault_personal_api_key`."))
    url: str = Field("", max_length=URL_MAX, description=(
        "Where it was found, publicly; may be empty."))
    source: str = Field("", max_length=NAME_MAX, description=(
        "In what it was found: `content`, `commit`, `issue_comment`, `npm`, …"))


FoundTokens = TypeAdapter(Annotated[list[FoundToken], Field(min_length=1,
                                                            max_length=REPORT_MAX)])


def parse_report(body: Any) -> list[FoundToken]:
    """A leaked-key report's parsed JSON as its matches; InvalidInput, in words, when it does
    not fit (never echoing a token)."""
    if not isinstance(body, list):
        raise service.InvalidInput('Send a JSON list of matches such as [{"token": "...", '
                                   '"type": "...", "url": "...", "source": "..."}].')
    try:
        return FoundTokens.validate_python(body)
    except ValidationError as error:
        raise _invalid_match(error) from None


_MATCH_PROBLEMS = {"missing": "is missing.", "string_type": "must be text.",
                   "string_too_long": "is too long."}


def _invalid_match(error: ValidationError) -> service.InvalidInput:
    first = error.errors(include_url=False)[0]
    loc = first["loc"]
    if not loc:
        return service.InvalidInput(f"A report lists 1 to {REPORT_MAX} matches.")
    if len(loc) == 1:
        return service.InvalidInput(f"Match {int(loc[0]) + 1} must be an object.")
    name = str(loc[1])
    problem = _MATCH_PROBLEMS.get(first["type"], "is not valid.")
    return service.InvalidInput(f"Match {int(loc[0]) + 1}: “{name}” {problem}", name)


class TokenLabel(TypedDict):
    """What KeyVault says about one reported match, in the order reported (GitHub's feedback
    format): the token's SHA-256, never the token itself."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    token_hash: Annotated[str, Field(pattern="^[0-9a-f]{64}$", description=(
        "SHA-256 of the token as sent, lowercase hex."))]
    token_type: Annotated[str, Field(description="The match's `type`, as sent.")]
    label: Annotated[Literal["true_positive", "false_positive"], Field(description=(
        "`true_positive`: a key this instance issued (a live one is now revoked); "
        "`false_positive`: anything else."))]


TokenLabels = TypeAdapter(list[TokenLabel])
