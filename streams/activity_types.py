"""The documented Marketo activity types: ids, names and Adobe I/O event type strings.

Source: the Adobe I/O Lead Activity Data Stream setup page (ids it supports), plus four standard
ids seen in Marketo's REST catalogue but not in that list. Custom activity types (id 100000 and up)
arrive with their own names, which are stored on each event.
"""

IO_ACTIVITY_PREFIX = "com.adobe.platform.marketo.activity."
IO_STANDARD_PREFIX = IO_ACTIVITY_PREFIX + "standard."
IO_CUSTOM_TYPE = IO_ACTIVITY_PREFIX + "custom"
CUSTOM_MIN_ID = 100000

# New Lead, Change Data Value, Merge Leads, Delete Lead: the activities that maintain a lead table.
LEAD_CHANGE_IDS = frozenset({12, 13, 32, 37})

NAMES = {
    1: "Visit Webpage",
    2: "Fill Out Form",
    3: "Click Link",
    6: "Send Email",
    7: "Email Delivered",
    8: "Email Bounced",
    9: "Unsubscribe Email",
    10: "Open Email",
    11: "Click Email",
    12: "New Lead",
    13: "Change Data Value",
    19: "Sync Lead to SFDC",
    21: "Convert Lead",
    22: "Change Score",
    23: "Change Owner",
    24: "Add To List",
    25: "Remove from List",
    26: "SFDC Activity",
    27: "Email Bounced Soft",
    28: "Sync Lead Updates to SFDC",
    29: "Delete Lead from SFDC",
    30: "SFDC Activity Updated",
    31: "SFDC Merge Leads",
    32: "Merge Leads",
    34: "Add to Opportunity",
    35: "Remove from Opportunity",
    36: "Update Opportunity",
    37: "Delete Lead",
    38: "Send Alert",
    39: "Send Sales Email",
    40: "Open Sales Email",
    41: "Click Sales Email",
    42: "Add to SFDC Campaign",
    43: "Remove from SFDC Campaign",
    44: "Change Status in SFDC Campaign",
    45: "Receive Sales Email",
    46: "Interesting Moment",
    47: "Request Campaign",
    48: "Sales Email Bounced",
    100: "Change Lead Partition",
    101: "Change Revenue Stage",
    102: "Change Revenue Stage Manually",
    104: "Change Status In Progression",
    106: "Enrich with Data.com",
    108: "Change Segment",
    110: "Call Webhook",
    111: "Send Forward to Friend Email",
    112: "Receive Forward to Friend Email",
    113: "Add To Nurture",
    114: "Change Nurture Track",
    115: "Change Nurture Cadence",
    123: "Change Program Member Data",
    131: "Fill Out Facebook Lead Ads Form",
    132: "Click RTP Call to Action",
    133: "Click Predictive Content",
    145: "Push Lead to Marketo",
    147: "Fill Out Linked Lead Gen Form",
    300: "Sync Lead to Microsoft",
    400: "Share Content",
    401: "Vote in Poll",
    402: "Sign Up for Referral Offer",
    403: "Achieve Goal In Referral",
    405: "Click Shared Link",
    406: "Win Sweepstakes",
    407: "Enter Sweepstakes",
    408: "Disqualify Sweepstakes",
    409: "Earn Entry In Social App",
    410: "Refer to Social App",
}


def io_type_for(activity_type_id, name):
    """The Adobe I/O event type an activity has: the name lowercased without spaces, or custom."""
    if activity_type_id is not None and activity_type_id >= CUSTOM_MIN_ID:
        return IO_CUSTOM_TYPE
    return IO_STANDARD_PREFIX + "".join(name.lower().split())


def name_for(activity_type_id, fallback=""):
    return NAMES.get(activity_type_id, fallback)


IO_TYPES = {io_type_for(i, n): i for i, n in NAMES.items()}
