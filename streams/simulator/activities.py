"""Lead activities with the attributes each documented type carries, built against the population.

Each builder returns the activity's content (type, lead, primary attribute, attributes, optional
campaign and program), or None when the population holds no lead in the state the activity needs
(nothing was delivered yet, so nothing can be opened); the caller then draws another type.
Attribute names and data types follow the Lead Activity Data Stream documentation (reference,
section 2.2); ``dataType`` "object" marks the id-like attributes, as Adobe's examples do.
"""

import json

from streams import activity_types
from streams.simulator.population import PROGRAM_STATUSES, SOURCES, TRACKED_FIELDS

# The realistic mix: mail and web dominate; merges and deletes are rare.
WEIGHTS = {
    1: 20,  # Visit Webpage
    2: 3,  # Fill Out Form
    3: 5,  # Click Link
    6: 14,  # Send Email
    7: 13,  # Email Delivered
    8: 0.6,  # Email Bounced (hard)
    27: 1.2,  # Email Bounced Soft
    9: 0.5,  # Unsubscribe Email
    10: 10,  # Open Email
    11: 4,  # Click Email
    12: 3,  # New Lead
    13: 5,  # Change Data Value
    22: 6,  # Change Score
    24: 2,  # Add To List
    25: 1,  # Remove from List
    32: 0.3,  # Merge Leads
    37: 0.3,  # Delete Lead
    46: 1,  # Interesting Moment
    47: 0.5,  # Request Campaign
    104: 2,  # Change Status In Progression
    108: 0.5,  # Change Segment
    110: 0.3,  # Call Webhook
    113: 1,  # Add To Nurture
    114: 0.5,  # Change Nurture Track
    115: 0.3,  # Change Nurture Cadence
    100001: 0.8,  # custom: Attended Booth
    100002: 0.5,  # custom: Started Product Trial
}
# Custom activity types a customer defined (ids from 100000): (name, primary attribute name).
CUSTOM_TYPES = {100001: ("Attended Booth", "Event Name"), 100002: ("Started Product Trial", "Product")}
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
)
HARD_BOUNCES = (("1", "1003", "550 5.1.1 The email account that you tried to reach does not exist"),)
SOFT_BOUNCES = (("2", "2001", "452 4.2.2 Mailbox full"), ("4", "4002", "421 4.7.0 Try again later"))
TRACKS = ((1, "Early stage"), (2, "Evaluating"), (3, "Customers"))


def attr(name, data_type, value):
    return {"name": name, "dataType": data_type, "value": value}


def name_of(type_id):
    if type_id in CUSTOM_TYPES:
        return CUSTOM_TYPES[type_id][0]
    return activity_types.NAMES[type_id]


class ActivityMaker:
    """Activities about one population, drawn with the content random generator."""

    def __init__(self, population, rng):
        self.pop = population
        self.rng = rng
        self._types = list(WEIGHTS)
        self._weights = list(WEIGHTS.values())
        self._builders = {type_id: getattr(self, f"_t{type_id}") for type_id in WEIGHTS}
        self.date = ""

    def make(self, date):
        """The next activity's content: a dict in the I/O ``data`` shape, without ids or Munchkin ID.

        ``date`` (ISO 8601) is the activity's date, for the attributes that repeat it.
        """
        self.date = date
        while True:
            type_id = self.rng.choices(self._types, self._weights)[0]
            activity = self.make_type(type_id)
            if activity is not None:
                return activity

    def make_type(self, type_id):
        """An activity of ``type_id``, or None when no lead is in the state it needs."""
        return self._builders[type_id]()

    # --- Shared pieces --------------------------------------------------------------------------------

    def _activity(self, type_id, lead, primary=None, attributes=(), asset=None):
        activity = {"leadId": lead.id, "activityTypeId": type_id, "activityType": name_of(type_id)}
        if primary is not None:
            activity["primaryAttributeValueId"], activity["primaryAttributeValue"] = primary
        activity["attributes"] = list(attributes)
        if asset is not None:
            self._attach_program(activity, asset)
        return activity

    def _attach_program(self, activity, asset):
        """The optional campaign and program fields, for activities a campaign of a program caused."""
        program = self.pop.program(asset.program_id if asset.program_id else asset.id)
        campaign = self.pop.campaign_for(program.id)
        activity.update(
            campaignId=campaign.id, campaignName=campaign.name, programId=program.id, programName=program.name
        )

    def _web(self, page=None):
        page = page or self.rng.choice(self.pop.pages)
        octets = (
            self.rng.randrange(11, 223),
            self.rng.randrange(256),
            self.rng.randrange(256),
            self.rng.randrange(1, 255),
        )
        ip = ".".join(map(str, octets))
        query = self.rng.choice(
            ("", "utm_source=newsletter&utm_medium=email", "utm_campaign=spring&utm_source=linkedin")
        )
        return [
            attr("Client IP Address", "string", ip),
            attr("Query Parameters", "string", query),
            attr(
                "Referrer URL", "string", self.rng.choice(("", "https://www.google.com/", "https://www.linkedin.com/"))
            ),
            attr("User Agent", "string", self.rng.choice(USER_AGENTS)),
            attr("Webpage ID", "object", page.id),
        ]

    def _run_id(self):
        return attr("Campaign Run ID", "integer", self.rng.randrange(10_000, 99_999))

    def _mail_lead(self):
        lead = self.pop.some_lead()
        return None if lead is None or lead.unsubscribed else lead

    # --- Web ------------------------------------------------------------------------------------------

    def _t1(self):  # Visit Webpage
        lead, page = self.pop.some_lead(), self.rng.choice(self.pop.pages)
        if lead is None:
            return None
        attributes = [*self._web(page), attr("Webpage URL", "string", page.url)]
        return self._activity(1, lead, (page.id, page.name), attributes)

    def _t2(self):  # Fill Out Form
        lead, form = self.pop.some_lead(), self.rng.choice(self.pop.forms)
        if lead is None:
            return None
        fields = {"Email": lead.email, "FirstName": lead.first, "LastName": lead.last}
        attributes = [*self._web(), attr("Form Fields", "string", json.dumps(fields, ensure_ascii=False))]
        return self._activity(2, lead, (form.id, form.name), attributes)

    def _t3(self):  # Click Link
        lead, link = self.pop.some_lead(), self.rng.choice(self.pop.links)
        if lead is None:
            return None
        return self._activity(3, lead, (link.id, link.name), [attr("Link ID", "object", link.id), *self._web()])

    # --- Mail: send -> delivered or bounced -> opened -> clicked, unsubscribe ----------------------------

    def _t6(self):  # Send Email
        lead, mailing = self._mail_lead(), self.rng.choice(self.pop.emails)
        if lead is None:
            return None
        self.pop.push("sent", lead, mailing)
        attributes = [
            self._run_id(),
            attr("Step ID", "integer", self.rng.randrange(1, 12)),
            attr("Mailing ID", "object", mailing.id),
            attr("Choice Number", "integer", 0),
        ]
        return self._activity(6, lead, (mailing.id, mailing.name), attributes, mailing)

    def _t7(self):  # Email Delivered
        found = self.pop.pop("sent")
        if found is None:
            return None
        lead, mailing = found
        self.pop.push("delivered", lead, mailing)
        attributes = [attr("Choice Number", "integer", 0), self._run_id(), attr("Mailing ID", "object", mailing.id)]
        return self._activity(7, lead, (mailing.id, mailing.name), attributes, mailing)

    def _bounce(self, type_id, kinds):
        found = self.pop.pop("sent")
        if found is None:
            return None
        lead, mailing = found
        category, subcategory, details = self.rng.choice(kinds)
        attributes = [
            attr("Subcategory", "string", subcategory),
            attr("Category", "string", category),
            attr("Email", "string", lead.email),
            attr("Mailing ID", "object", mailing.id),
            attr("Details", "string", details),
        ]
        if type_id == 27:
            attributes.insert(0, self._run_id())
        else:
            lead.unsubscribed = True  # a hard bounce: Marketo sends this address nothing more
        return self._activity(type_id, lead, (mailing.id, mailing.name), attributes, mailing)

    def _t8(self):  # Email Bounced (hard)
        return self._bounce(8, HARD_BOUNCES)

    def _t27(self):  # Email Bounced Soft
        return self._bounce(27, SOFT_BOUNCES)

    def _t9(self):  # Unsubscribe Email
        found = self.pop.pop("delivered") or self.pop.pop("opened")
        if found is None:
            return None
        lead, mailing = found
        lead.unsubscribed = True
        attributes = [
            self._run_id(),
            *self._web(),
            attr("Mailing ID", "object", mailing.id),
            attr("Webform ID", "object", self.pop.forms[0].id),
            attr("Form Fields", "string", json.dumps({"Email": lead.email, "Unsubscribed": "true"})),
        ]
        return self._activity(9, lead, (mailing.id, mailing.name), attributes, mailing)

    def _device(self):
        mobile = self.rng.random() < 0.45
        device = self.rng.choice(("iPhone", "Pixel 8")) if mobile else "Desktop"
        platform = self.rng.choice(("iOS", "Android")) if mobile else self.rng.choice(("Windows", "Mac OS"))
        return [
            attr("Platform", "string", platform),
            attr("Device", "string", device),
            attr("User Agent", "string", self.rng.choice(USER_AGENTS)),
            attr("Is Mobile Device", "boolean", mobile),
        ]

    def _t10(self):  # Open Email
        found = self.pop.pop("delivered")
        if found is None:
            return None
        lead, mailing = found
        self.pop.push("opened", lead, mailing)
        attributes = [self._run_id(), *self._device(), attr("Mailing ID", "object", mailing.id)]
        return self._activity(10, lead, (mailing.id, mailing.name), attributes, mailing)

    def _t11(self):  # Click Email
        found = self.pop.pop("opened")
        if found is None:
            return None
        lead, mailing = found
        link = self.rng.choice(self.pop.links)
        attributes = [
            self._run_id(),
            attr("Mailing ID", "object", mailing.id),
            attr("Link", "string", link.name),
            attr("Link ID", "object", link.id),
            *self._device(),
        ]
        return self._activity(11, lead, (mailing.id, mailing.name), attributes, mailing)

    # --- Lead changes: new, field and score changes, merges, deletes ----------------------------------

    def _t12(self):  # New Lead
        lead = self.pop.add_lead()
        source = self.rng.choice(SOURCES)
        attributes = [
            attr("Created Date", "string", self.date[:10]),
            attr("Source Type", "string", "New lead"),
            attr("Lead Source", "string", source),
        ]
        if source == "Web form":
            attributes.append(attr("Form Name", "string", self.rng.choice(self.pop.forms).name))
        return self._activity(12, lead, None, attributes)

    def _t13(self):  # Change Data Value
        lead = self.pop.some_lead()
        if lead is None:
            return None
        field_id, name, values = self.rng.choice(TRACKED_FIELDS)
        old = lead.fields[field_id][1]
        new = self.rng.choice([value for value in values if value != old])
        lead.fields[field_id] = (name, new)
        attributes = [
            attr(
                "Reason", "string", self.rng.choice(("Form fill-out", "Changed by smart campaign", "Web service API"))
            ),
            attr("Attribute Name", "string", name),
            attr("New Value", "string", new),
            attr("Old Value", "string", old),
            attr("Source", "string", self.rng.choice(("Web form fillout", "Marketo Flow Action", "Web service API"))),
        ]
        return self._activity(13, lead, (field_id, name), attributes)

    def _t22(self):  # Change Score
        lead = self.pop.some_lead()
        if lead is None:
            return None
        change = self.rng.choice((5, 10, 15, 25, -5, -10))
        old, lead.score = lead.score, max(0, lead.score + change)
        attributes = [
            attr("Reason", "string", self.rng.choice(("Visited pricing page", "Opened email", "Inactivity decay"))),
            attr("Change Value", "string", f"{change:+d}"),
            attr("New Value", "integer", lead.score),
            attr("Old Value", "integer", old),
            attr("Score Name", "string", "Lead Score"),
        ]
        return self._activity(22, lead, (31, "Lead Score"), attributes)

    def _t32(self):  # Merge Leads: the loser is merged into the winner and never acts again
        winner, loser = self.pop.some_lead(), self.pop.some_lead()
        if winner is None or loser is None or winner is loser:
            return None
        self.pop.retire(loser)
        winner.lists |= loser.lists
        attributes = [
            attr("Merge IDs", "string", str(loser.id)),
            attr("Merge Fields", "string", "Email Address, Company Name"),
            attr("Merged in Sales", "boolean", False),
            attr("Merge Source", "string", "Marketo"),
        ]
        return self._activity(32, winner, (winner.id, winner.name), attributes)

    def _t37(self):  # Delete Lead
        lead = self.pop.some_lead()
        if lead is None:
            return None
        self.pop.retire(lead)
        return self._activity(37, lead, (lead.id, lead.name), [])

    # --- Lists, programs, nurture -----------------------------------------------------------------------

    def _t24(self):  # Add To List
        lead = self.pop.some_lead()
        candidates = [] if lead is None else [item for item in self.pop.lists if item.id not in lead.lists]
        if not candidates:
            return None
        target = self.rng.choice(candidates)
        lead.lists.add(target.id)
        self.pop.remember("lists", lead)
        campaign = self.rng.choice(self.pop.campaigns)
        attributes = [attr("List ID", "object", target.id), attr("Campaign", "string", campaign.name)]
        return self._activity(24, lead, (target.id, target.name), attributes)

    def _t25(self):  # Remove from List: only from a list the lead is on
        lead = self.pop.recall("lists", lambda lead: lead.lists)
        if lead is None:
            return None
        target = self.pop.asset(self.rng.choice(sorted(lead.lists)))
        lead.lists.discard(target.id)
        attributes = [
            attr("List ID", "object", target.id),
            attr("Campaign", "string", self.rng.choice(self.pop.campaigns).name),
            attr("Channel", "string", self.rng.choice(("Marketo Flow Action", "Web service API"))),
        ]
        return self._activity(25, lead, (target.id, target.name), attributes)

    def _t104(self):  # Change Status In Progression: statuses only move forward
        lead = self.pop.some_lead()
        program = self.rng.choice([p for p in self.pop.programs if p.kind in PROGRAM_STATUSES])
        if lead is None:
            return None
        statuses = PROGRAM_STATUSES[program.kind]
        old = lead.programs.get(program.id, statuses[0])
        index = statuses.index(old)
        if index + 1 >= len(statuses):
            return None
        new = statuses[index + 1]
        lead.programs[program.id] = new
        attributes = [
            attr("Acquired By", "boolean", old == statuses[0]),
            attr("Old Status", "string", old),
            attr("Old Status ID", "integer", 100 + index),
            attr("New Status", "string", new),
            attr("New Status ID", "integer", 101 + index),
            attr("Success", "boolean", new in ("Attended", "Engaged")),
            attr("Program ID", "object", program.id),
        ]
        return self._activity(104, lead, (program.id, program.name), attributes, program)

    def _nurture_program(self):
        return self.rng.choice(self.pop.programs_of("Engagement Program"))

    def _t113(self):  # Add To Nurture
        lead, program = self.pop.some_lead(), self._nurture_program()
        if lead is None or program.id in lead.nurture:
            return None
        track_id, track = self.rng.choice(TRACKS)
        lead.nurture[program.id] = (track_id, "Normal")
        self.pop.remember(program.id, lead)
        attributes = [
            attr("Program ID", "object", program.id),
            attr("Track ID", "integer", track_id),
            attr("Track Name", "string", track),
        ]
        return self._activity(113, lead, (program.id, program.name), attributes, program)

    def _nurtured(self):
        program = self._nurture_program()
        return self.pop.recall(program.id, lambda lead: program.id in lead.nurture), program

    def _t114(self):  # Change Nurture Track: only for a lead in that nurture program
        lead, program = self._nurtured()
        if lead is None:
            return None
        old_id, cadence = lead.nurture[program.id]
        new_id, new_name = self.rng.choice([track for track in TRACKS if track[0] != old_id])
        lead.nurture[program.id] = (new_id, cadence)
        attributes = [
            attr("Previous Track ID", "integer", old_id),
            attr("Previous Track Name", "string", dict(TRACKS)[old_id]),
            attr("New Track ID", "integer", new_id),
            attr("Track Name", "string", new_name),
            attr("Program ID", "object", program.id),
        ]
        return self._activity(114, lead, (program.id, program.name), attributes, program)

    def _t115(self):  # Change Nurture Cadence
        lead, program = self._nurtured()
        if lead is None:
            return None
        track_id, old = lead.nurture[program.id]
        new = "Paused" if old == "Normal" else "Normal"
        lead.nurture[program.id] = (track_id, new)
        attributes = [attr("New Nurture Cadence", "string", new), attr("Program ID", "object", program.id)]
        return self._activity(115, lead, (program.id, program.name), attributes, program)

    # --- Other documented types ----------------------------------------------------------------------

    def _t46(self):  # Interesting Moment
        lead = self.pop.some_lead()
        if lead is None:
            return None
        kind = self.rng.choice(("Web", "Email", "Milestone"))
        attributes = [
            attr("Source", "string", "Marketo"),
            attr("Type", "string", kind),
            attr("Date", "string", self.date),
        ]
        return self._activity(46, lead, None, attributes)

    def _t47(self):  # Request Campaign
        lead, campaign = self.pop.some_lead(), self.rng.choice(self.pop.campaigns)
        if lead is None:
            return None
        attributes = [attr("Campaign ID", "object", campaign.id), attr("Source", "string", "Web service API")]
        return self._activity(47, lead, (campaign.id, campaign.name), attributes)

    def _t108(self):  # Change Segment
        lead, segmentation = self.pop.some_lead(), self.rng.choice(self.pop.segmentations)
        if lead is None:
            return None
        attributes = [
            attr("New Segment ID", "integer", segmentation.id * 10 + self.rng.randrange(1, 5)),
            attr("Segmentation ID", "object", segmentation.id),
        ]
        return self._activity(108, lead, (segmentation.id, segmentation.name), attributes)

    def _t110(self):  # Call Webhook
        lead, webhook = self.pop.some_lead(), self.rng.choice(self.pop.webhooks)
        if lead is None:
            return None
        error = self.rng.choice(("0", "0", "0", "1"))
        return self._activity(110, lead, (webhook.id, webhook.name), [attr("Error Type", "string", error)])

    def _custom(self, type_id, values, attributes):
        lead = self.pop.some_lead()
        if lead is None:
            return None
        value = self.rng.choice(values)
        return self._activity(type_id, lead, (values.index(value) + 1, value), attributes)

    def _t100001(self):  # custom: Attended Booth
        booth = attr("Booth", "string", self.rng.choice(("A12", "B3", "C7")))
        return self._custom(100001, ("Trade Show Berlin", "Data Summit Lisbon"), [booth])

    def _t100002(self):  # custom: Started Product Trial
        plan = attr("Plan", "string", self.rng.choice(("Starter", "Team", "Enterprise")))
        return self._custom(100002, ("Fluxo Cloud", "Fluxo On-Prem"), [plan, attr("Trial Days", "integer", 14)])
