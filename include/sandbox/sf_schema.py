"""The sandbox org's metadata: which sObjects exist, their fields and types, key prefixes,
relationships and tracked (history) fields.

This is the single description that `describe`, the SOQL type checks and the store share. It must
never contain data or behaviour: only what a real org's metadata would say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leadsla.lifecycle import load_lifecycle

# Field types use the names Salesforce's describe returns.
ID, STRING, EMAIL, PICKLIST, BOOLEAN, DATETIME, DATE, DOUBLE, CURRENCY, REFERENCE, TEXTAREA = (
    "id",
    "string",
    "email",
    "picklist",
    "boolean",
    "datetime",
    "date",
    "double",
    "currency",
    "reference",
    "textarea",
)

# The demo org's Status and Rejection_Reason__c picklists are the lifecycle's own (include/config/
# lifecycle.yaml), so its crm_fields.yaml status_map is empty; a real org maps its values there.
_LIFECYCLE = load_lifecycle()
LEAD_STATUSES = _LIFECYCLE.lead().names
# Waiting on the lead ("Nurture - contact later"): SLA clocks on Status pause there.
LEAD_PAUSED_STATUSES = _LIFECYCLE.lead().paused
REJECTION_REASONS = list(_LIFECYCLE.lead().rejection_reasons)
LEAD_SOURCES = ["Demo Request", "Content Download", "Webinar", "Event", "Inbound Call", "Partner", "Web"]
# "Demo Request": the follow-the-sun desk's leads (sandbox.simulate DESK_LEAD_TYPE), the policy's
# demo_request tier.
LEAD_TYPES = ["Inbound", "Enterprise", "Mid-Market", "SMB", "Partner", "Demo Request"]
SLA_STATUSES = ["On Track", "Warning", "Breached", "Met", "Paused"]
# What Lead SLA Monitor stamps (leadsla.decisions.stamping): the War Room's colours and the clock's
# states in words. The demo org's picklists offer exactly these values.
SLA_COLOURS = ["green", "yellow", "red"]
SLA_STATES = ["running", "paused", "met", "handed on", "breached"]
ACCOUNT_TIERS = ["Tier 1", "Tier 2", "Tier 3"]
OPPORTUNITY_STAGES = _LIFECYCLE.of("Opportunity").names
# ListEmail (a mass e-mail) and Cadence (a sales-engagement sequence step) are sent by automation.
TASK_SUBTYPES = ["Call", "Email", "Task", "LinkedIn", "ListEmail", "Cadence"]
TASK_TYPES = ["Call", "Email", "Meeting", "Other"]
TIME_ZONES = ["America/New_York", "America/Denver", "Europe/London", "Australia/Sydney", "UTC"]


@dataclass(frozen=True)
class Field:
    """One field as describe() reports it."""

    name: str
    type: str
    label: str = ""
    picklist: tuple[str, ...] = ()
    updateable: bool = True
    nillable: bool = True
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    #: Text length (describe's `length`; writes longer than it fail with STRING_TOO_LONG); None
    #: is Salesforce's 255 for text and picklists, unchecked.
    length: int | None = None
    #: A number's digits in all and after the point (describe's `precision` and `scale`).
    precision: int = 18
    scale: int = 2

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label or self.name.replace("__c", "").replace("_", " "),
            "updateable": self.updateable,
            "createable": self.updateable,
            "nillable": self.nillable,
            "custom": self.name.endswith("__c"),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "value": v, "validFor": None}
                for v in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "length": (self.length or 255) if self.type in (STRING, EMAIL, PICKLIST, TEXTAREA) else 0,
            "precision": self.precision if self.type in (DOUBLE, CURRENCY) else 0,
            "scale": self.scale if self.type in (DOUBLE, CURRENCY) else 0,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    ID: "tns:ID",
    REFERENCE: "tns:ID",
    BOOLEAN: "xsd:boolean",
    DATETIME: "xsd:dateTime",
    DATE: "xsd:date",
    DOUBLE: "xsd:double",
    CURRENCY: "xsd:double",
}


@dataclass(frozen=True)
class SObject:
    """One sObject type: key prefix, fields and which fields write history rows."""

    name: str
    key_prefix: str
    fields: tuple[Field, ...]
    tracked: tuple[str, ...] = ()
    history_object: str | None = None
    history_parent_field: str | None = None
    label: str = ""
    queryable: bool = True
    writable: bool = True
    by_name: dict[str, Field] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self.by_name[f.name.lower()] = f

    def field(self, name: str) -> Field | None:
        return self.by_name.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field behind a relationship name (Owner -> OwnerId), case-insensitive."""
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == name.lower():
                return f
        return None


def _ro(name: str, type_: str, **kw) -> Field:
    return Field(name, type_, updateable=False, **kw)


def _ref(name: str, to: tuple[str, ...], rel: str, updateable: bool = True) -> Field:
    return Field(name, REFERENCE, reference_to=to, relationship_name=rel, updateable=updateable)


def _system_fields() -> tuple[Field, ...]:
    return (
        _ro("Id", ID, nillable=False),
        _ro("IsDeleted", BOOLEAN, nillable=False),
        _ro("CreatedDate", DATETIME, nillable=False),
        _ref("CreatedById", ("User",), "CreatedBy", updateable=False),
        _ro("LastModifiedDate", DATETIME, nillable=False),
        _ref("LastModifiedById", ("User",), "LastModifiedBy", updateable=False),
        _ro("SystemModstamp", DATETIME, nillable=False),
    )


def _history_fields(parent_field: str, parent: str) -> tuple[Field, ...]:
    return (
        _ro("Id", ID, nillable=False),
        _ro("IsDeleted", BOOLEAN, nillable=False),
        _ref(parent_field, (parent,), parent, updateable=False),
        _ro("Field", PICKLIST),
        _ro("DataType", STRING),
        _ro("OldValue", STRING),
        _ro("NewValue", STRING),
        _ro("CreatedDate", DATETIME, nillable=False),
        _ref("CreatedById", ("User",), "CreatedBy", updateable=False),
    )


_OWNER = _ref("OwnerId", ("User", "Group"), "Owner")

OBJECTS: dict[str, SObject] = {}


def _add(obj: SObject) -> None:
    OBJECTS[obj.name.lower()] = obj


_add(
    SObject(
        "Lead",
        "00Q",
        _system_fields()
        + (
            _ro("Name", STRING),
            Field("FirstName", STRING),
            Field("LastName", STRING, nillable=False),
            Field("Company", STRING),
            Field("Email", EMAIL),
            Field("Title", STRING),
            Field("Phone", STRING),
            Field("Status", PICKLIST, picklist=tuple(LEAD_STATUSES)),
            _OWNER,
            Field("LeadSource", PICKLIST, picklist=tuple(LEAD_SOURCES)),
            Field("Country", STRING),
            Field("IsConverted", BOOLEAN),
            _ref("ConvertedOpportunityId", ("Opportunity",), "ConvertedOpportunity"),
            _ref("ConvertedAccountId", ("Account",), "ConvertedAccount"),
            Field("ConvertedDate", DATE),
            Field("MQL_Date__c", DATETIME),
            Field("SAL_Date__c", DATETIME),
            Field("SQL_Date__c", DATETIME),
            Field("First_Response_Date__c", DATETIME),
            Field("Time_to_First_Touch__c", DOUBLE),
            Field("SLA_Status__c", PICKLIST, picklist=tuple(SLA_STATUSES)),
            Field("SLA_Due__c", DATETIME),
            Field("SLA_Breach__c", BOOLEAN),
            Field("SLA_Lock_Until__c", DATETIME),
            # Which escalation or lock-keeping action last wrote the owner or lock (crash recovery).
            Field("SLA_Action_Id__c", STRING, length=40),
            Field("Rejection_Reason__c", PICKLIST, picklist=tuple(REJECTION_REASONS)),
            Field("Lead_Type__c", PICKLIST, picklist=tuple(LEAD_TYPES)),
            Field("Account_Tier__c", PICKLIST, picklist=tuple(ACCOUNT_TIERS)),
            Field("Campaign__c", STRING),
            Field("Lead_Replied__c", BOOLEAN),
            Field("Contact_Attempts__c", DOUBLE),
            Field("Re_Engagement_Date__c", DATE),
            Field("State", STRING),
            Field("Lead_Score__c", DOUBLE),
            Field("Routing_Reason__c", STRING),
            Field("Routing_Rule__c", STRING),
            Field("Routing_Policy_Version__c", STRING),
            # The clock on the record, stamped by sla_monitor (crm_fields.yaml sla_fields).
            Field("SLA_Colour__c", PICKLIST, picklist=tuple(SLA_COLOURS)),
            Field("SLA_State__c", PICKLIST, picklist=tuple(SLA_STATES)),
            Field("SLA_Breached_At__c", DATETIME),
            _ref("SLA_Accountable_Owner__c", ("User",), "SLA_Accountable_Owner__r"),
            Field("SLA_Policy_Version__c", STRING, length=40),
        ),
        tracked=("Status", "OwnerId", "Rejection_Reason__c", "IsConverted", "Lead_Replied__c"),
        history_object="LeadHistory",
        history_parent_field="LeadId",
    )
)
_add(SObject("LeadHistory", "017", _history_fields("LeadId", "Lead"), writable=False))
_add(
    SObject(
        "Opportunity",
        "006",
        _system_fields()
        + (
            Field("Name", STRING, nillable=False),
            _ref("AccountId", ("Account",), "Account"),
            _OWNER,
            Field("StageName", PICKLIST, picklist=tuple(OPPORTUNITY_STAGES)),
            _ro("IsWon", BOOLEAN),
            _ro("IsClosed", BOOLEAN),
            Field("CloseDate", DATE),
            Field("Amount", CURRENCY),
            Field("LeadSource", PICKLIST, picklist=tuple(LEAD_SOURCES)),
            Field("CS_Kickoff_Date__c", DATE),
            Field("Onboarding_Complete__c", BOOLEAN),
        ),
        tracked=(
            "StageName",
            "OwnerId",
            "IsWon",
            "IsClosed",
            "CloseDate",
            "Amount",
            "CS_Kickoff_Date__c",
            "Onboarding_Complete__c",
        ),
        history_object="OpportunityFieldHistory",
        history_parent_field="OpportunityId",
    )
)
_add(
    SObject("OpportunityFieldHistory", "017", _history_fields("OpportunityId", "Opportunity"), writable=False)
)
_add(
    SObject(
        "Account",
        "001",
        _system_fields()
        + (
            Field("Name", STRING, nillable=False),
            _OWNER,
            Field("Industry", STRING),
            Field("Website", STRING),
            Field("Tier__c", PICKLIST, picklist=tuple(ACCOUNT_TIERS)),
            _ref("CS_Owner__c", ("User",), "CS_Owner__r"),
        ),
    )
)
_ACTIVITY = (
    _ref("WhoId", ("Lead",), "Who"),
    _ref("WhatId", ("Opportunity", "Account"), "What"),
    _OWNER,
    Field("Subject", STRING),
    Field("Type", PICKLIST, picklist=tuple(TASK_TYPES)),
    Field("Description", TEXTAREA),
    Field("ActivityDate", DATE),
)
_add(
    SObject(
        "Task",
        "00T",
        _system_fields()
        + _ACTIVITY
        + (
            Field("TaskSubtype", PICKLIST, picklist=tuple(TASK_SUBTYPES)),
            Field("Status", PICKLIST, picklist=("Not Started", "In Progress", "Completed")),
            Field("CompletedDateTime", DATETIME),
            Field("CallDurationInSeconds", DOUBLE),
        ),
    )
)
_add(
    SObject(
        "Event",
        "00U",
        _system_fields()
        + _ACTIVITY
        + (
            Field("EventSubtype", PICKLIST, picklist=("Event",)),
            Field("StartDateTime", DATETIME),
            Field("EndDateTime", DATETIME),
            Field("DurationInMinutes", DOUBLE),
        ),
    )
)
_add(
    SObject(
        "UserRole",
        "00E",
        (
            _ro("Id", ID, nillable=False),
            Field("Name", STRING),
            Field("DeveloperName", STRING),
            _ro("SystemModstamp", DATETIME),
        ),
    )
)
_add(
    SObject(
        "User",
        "005",
        _system_fields()
        + (
            Field("Username", STRING),
            Field("Name", STRING),
            Field("FirstName", STRING),
            Field("LastName", STRING),
            Field("Email", EMAIL),
            Field("MobilePhone", STRING),
            _ref("ManagerId", ("User",), "Manager"),
            Field("IsActive", BOOLEAN),
            Field("TimeZoneSidKey", PICKLIST, picklist=tuple(TIME_ZONES)),
            Field("Department", STRING),
            Field("Title", STRING),
            _ref("UserRoleId", ("UserRole",), "UserRole"),
            Field("Team__c", STRING),
            Field("Out_Of_Office__c", BOOLEAN),
        ),
    )
)
_add(
    SObject(
        "Group",
        "00G",
        _system_fields()
        + (
            Field("Name", STRING),
            Field("DeveloperName", STRING),
            Field("Type", PICKLIST, picklist=("Queue", "Regular", "Role")),
            Field("Email", EMAIL),
        ),
    )
)

BY_PREFIX: dict[str, SObject] = {o.key_prefix: o for o in OBJECTS.values() if o.key_prefix != "017"}


def sobject(name: str) -> SObject | None:
    """The sObject called `name` (case-insensitive), or None."""
    return OBJECTS.get(name.lower())
