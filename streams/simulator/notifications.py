"""Notification Data Stream events (Beta): campaign aborts and failures, web-service daily quota,
and the three types Marketo lists without documenting their wire names.

Documented (reference, section 4.2): ``campaign_abort``, ``campaign_failure`` and ``web_services``
with ``subType`` "dailyQuota". The daily quota is announced when usage crosses 25, 50, 80 and 100 %,
in that order, then a new day starts.
"""

PREFIX = "com.adobe.platform.marketo.notification."
QUOTA_STEPS = (25, 50, 80, 100)
DAILY_QUOTA = 50_000
SERVICE_NAMES = ("CRM Sync Service", "Data Warehouse Export", "Fluxo Sandbox ETL")
# GUESSES: Marketo lists "salesforce sync failure", "nurture (program exhausted)" and "test group
# (A/B test result)" notifications but documents no wire names for them. These follow the documented
# componentType style and are not Adobe's; Fluxo accepts any com.adobe.platform.marketo.notification.*.
GUESSED_KINDS = ("salesforce_sync_failure", "nurture", "test_group")
WEIGHTS = {
    "web_services": 3,
    "campaign_abort": 3,
    "campaign_failure": 2,
    "salesforce_sync_failure": 1.5,  # GUESS (see GUESSED_KINDS)
    "nurture": 1,  # GUESS
    "test_group": 0.7,  # GUESS
}
SYNC_ERRORS = (
    "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName]",
    "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access to this record",
    "INVALID_SESSION_ID: Session expired or invalid",
)


class NotificationMaker:
    """Notifications as (kind, data) pairs; ``kind`` is the type's suffix after PREFIX."""

    def __init__(self, population, rng, ims_org):
        self.pop = population
        self.rng = rng
        self.ims_org = ims_org
        self._quota_step = 0
        self._kinds = list(WEIGHTS)
        self._weights = list(WEIGHTS.values())

    def make(self):
        kind = self.rng.choices(self._kinds, self._weights)[0]
        component_type, sub_type, action = getattr(self, "_" + kind)()
        data = {
            "munchkinId": self.pop.munchkin_id,
            "imsOrgId": self.ims_org,
            "componentType": component_type,
            "subType": sub_type,
            "eventAction": action,
        }
        return kind, data

    def _web_services(self):
        percent = QUOTA_STEPS[self._quota_step]
        self._quota_step = (self._quota_step + 1) % len(QUOTA_STEPS)
        services = sorted(self.rng.sample(SERVICE_NAMES, self.rng.randrange(1, 3)))
        return "web_services", "dailyQuota", {"dailyQuota": DAILY_QUOTA, "percent": percent, "serviceNames": services}

    def _campaign_abort(self):
        campaign, user = self.rng.choice(self.pop.campaigns), self.pop.user()
        return "campaign_abort", "user_campaign_abort", {"campaignId": campaign.id, "userId": user.email}

    def _campaign_failure(self):
        # The documented example of this type repeats campaign_abort's componentType and subType (most
        # likely a copy-paste slip in the docs); these values are the documented style's. GUESS.
        campaign, user = self.rng.choice(self.pop.campaigns), self.pop.user()
        return "campaign_failure", "campaign_failure", {"campaignId": campaign.id, "userId": user.email}

    def _salesforce_sync_failure(self):  # GUESS: shape not documented
        lead = self.pop.some_lead() or self.pop.leads[min(self.pop.leads)]
        return "salesforce_sync_failure", "sync_failure", {"leadId": lead.id, "error": self.rng.choice(SYNC_ERRORS)}

    def _nurture(self):  # GUESS: "nurture (program exhausted)"
        program = self.rng.choice(self.pop.programs_of("Engagement Program"))
        action = {"programId": program.id, "programName": program.name, "exhaustedCount": self.rng.randrange(1, 400)}
        return "nurture", "program_exhausted", action

    def _test_group(self):  # GUESS: "test group (A/B test result)"
        program = self.rng.choice(self.pop.programs_of("Email Batch Program"))
        emails = [email for email in self.pop.emails if email.program_id == program.id]
        action = {
            "programId": program.id,
            "emailId": self.rng.choice(emails).id,
            "winner": self.rng.choice(("A", "B")),
            "criterion": self.rng.choice(("opens", "clicks", "clicks to opens")),
        }
        return "test_group", "ab_test_result", action
