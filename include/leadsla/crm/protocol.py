"""What the sync and write-back need from a CRM, as a Protocol, and the errors a CRM call can end in.

`salesforce.SalesforceClient` is the real implementation; tests may pass any object with the same
shape. This module must never talk to the network or import a CRM library.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, Protocol

from leadsla.errors import LeadSlaError


class CrmError(LeadSlaError):
    """A CRM call failed in a way the caller cannot fix by retrying now."""


class ApiLimitExceeded(CrmError):
    """The org answered REQUEST_LIMIT_EXCEEDED: stop the cycle, keep the watermark, try later."""


class PreconditionFailed(CrmError):
    """A conditional write answered 412: someone changed a record after we read it."""


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` is the CRM, or the way to it, saying no for now: a `CrmError` (the client's
    translation of what the org answered, timeouts and dropped connections included) or an HTTP or
    connection error the client let through (an OSError, which requests' errors are, or an
    http.client error). A retry later may succeed. Anything else is a bug in our code: retrying
    on a timer would hide it, so callers fail visibly instead."""
    return isinstance(exc, CrmError | OSError | HTTPException)


class MappingError(LeadSlaError):
    """The field mapping file is invalid, or names a field the org does not have."""


@dataclass(frozen=True)
class ApiUsage:
    """API calls made by this client, and the org's daily allowance from `Sforce-Limit-Info`.

    `org_used`/`org_max` are None until a response carried the header.
    """

    calls: int
    org_used: int | None = None
    org_max: int | None = None

    @property
    def org_remaining(self) -> int | None:
        if self.org_used is None or self.org_max is None:
            return None
        return self.org_max - self.org_used


class CrmClient(Protocol):
    """The calls the sync and write-back make; each HTTP request counts in `usage()`."""

    def query_pages(self, soql: str, *, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Yield the result of `soql` page by page (following nextRecordsUrl lazily)."""
        ...

    def describe_fields(self, object_name: str) -> set[str]:
        """The API names of the object's fields (one describe call)."""
        ...

    def describe_picklists(self, object_name: str) -> dict[str, list[str]]:
        """The object's picklist fields and their active values (the same describe call)."""
        ...

    def describe_field_types(self, object_name: str) -> dict[str, dict[str, Any]]:
        """Each field's type as the write-back needs it (the same describe call): name -> {type,
        updateable, length, precision, scale, picklist (active values), reference_to}."""
        ...

    def update_records(
        self, object_name: str, records: Sequence[Mapping[str, Any]], *, if_unmodified_since: dt.datetime
    ) -> list[dict[str, Any]]:
        """Update up to 200 records in one composite call, conditionally.

        Returns:
            One SaveResult per record, in order: {"id", "success", "errors": [{"statusCode", ...}]}.

        Raises:
            PreconditionFailed: the org refused the batch with 412.
        """
        ...

    def usage(self) -> ApiUsage: ...
