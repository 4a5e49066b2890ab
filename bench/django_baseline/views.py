"""The guarded view: DRF parses the body, HasAPIKey checks the presented key, a fixed answer."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

from bench.ceiling_app import HEADERS, HEALTHY, VALID_ANSWER

ANSWER = json.loads(VALID_ANSWER)  # the ceiling's body, the same keys as KeyVault's `valid`


class GuardedVerify(APIView):
    """`POST /api/verify/`: the library's guarded view, answering like KeyVault's valid verify."""

    permission_classes = [HasAPIKey]

    def post(self, request: Request) -> Response:
        data = request.data  # DRF's JSONParser reads and parses the body here
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise ParseError('expected {"key": "..."}')
        return Response(ANSWER, headers=HEADERS)


def healthz(request: HttpRequest) -> HttpResponse:
    """The readiness probe the benchmark polls before measuring; a plain Django view."""
    return HttpResponse(HEALTHY, content_type="application/json")
