"""schemathesis hooks for test_api_document: one check in place of `positive_data_acceptance`.

OpenAPI declares each parameter's constraints, not the ones between parameters (start after
end, a range too long to scan), which the operations describe in words and answer with a 422
whose detail starts with RANGE_ERROR. That 422, and only it, passes; any other rejection of a
request the document calls valid still fails exactly as the built-in check fails it."""

from __future__ import annotations

from typing import Any

import orjson
import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tickpipe.services.gateway.api import RANGE_ERROR


@schemathesis.check
def positive_data_acceptance_between_parameters(ctx: Any, response: Any, case: Any) -> None:
    try:
        positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code != 422 or not _detail(response).startswith(RANGE_ERROR):
            raise


def _detail(response: Any) -> str:
    try:
        detail = orjson.loads(response.content).get("detail")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return detail if isinstance(detail, str) else ""
