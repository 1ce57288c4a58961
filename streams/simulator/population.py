"""A stable Marketo instance to generate traffic about: leads, e-mails, campaigns, programs, lists,
pages, forms and users, with the state that keeps a lead's timeline sensible.

Everything here is content: built from the content random generator alone, so a seed gives the same
instance every run. A lead is created before it acts, opens only mail delivered to it, clicks only
mail it opened, is removed only from lists it is on, and stops acting once deleted or merged away.
"""

from dataclasses import dataclass, field

FIRST_NAMES = (
    "Ana", "Ben", "Chloé", "Dmitri", "Elif", "Farah", "Gustavo", "Hana", "Ivan", "Jade", "Kwame", "Lena",
    "Mateo", "Nora", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tomás", "Uma", "Viktor", "Wen", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Andersen", "Bauer", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Haddad", "Ito", "Jansen",
    "Kowalski", "López", "Müller", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva", "Tanaka", "Novak",
)  # fmt: skip
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli")
JOB_TITLES = ("Marketing Manager", "CMO", "Demand Gen Lead", "Data Engineer", "Sales Director", "Ops Analyst")
COUNTRIES = ("Germany", "France", "United States", "Brazil", "Japan", "India", "Spain", "Canada")
INDUSTRIES = ("Software", "Retail", "Manufacturing", "Healthcare", "Finance", "Education")
LEAD_STATUSES = ("New", "Working", "Nurturing", "MQL", "SQL", "Disqualified")
SOURCES = ("Web form", "Trade show", "List import", "Paid social", "Webinar", "Partner referral")

# Change Data Value fields: (field id, display name, possible values).
TRACKED_FIELDS = (
    (45, "Job Title", JOB_TITLES),
    (46, "Company Name", COMPANIES),
    (51, "Country", COUNTRIES),
    (58, "Industry", INDUSTRIES),
    (62, "Lead Status", LEAD_STATUSES),
)
PROGRAM_STATUSES = {
    "Event Program": ("Not in Program", "Invited", "Registered", "Attended", "No Show"),
    "Default Program": ("Not in Program", "Member", "Engaged"),
    "Email Batch Program": ("Not in Program", "Member", "Engaged"),
    "Engagement Program": ("Not in Program", "Member", "Engaged", "Exhausted"),
}
MAX_PENDING = 5000  # candidates kept per mail stage: a long demo run must not grow without bound


@dataclass
class Asset:
    id: int
    name: str
    kind: str = ""
    program_id: int | None = None
    url: str = ""


@dataclass
class Lead:
    id: int
    first: str
    last: str
    email: str
    score: int = 0
    fields: dict = field(default_factory=dict)
    lists: set = field(default_factory=set)
    programs: dict = field(default_factory=dict)  # program id -> status
    nurture: dict = field(default_factory=dict)  # program id -> (track id, cadence)
    active: bool = True
    unsubscribed: bool = False

    @property
    def name(self):
        return f"{self.first} {self.last}"


@dataclass
class User:
    id: int
    email: str
    admin: bool = False
    api_only: bool = False


class Population:
    """One Marketo instance's leads and assets, and the state their activities change."""

    def __init__(self, rng, munchkin_id, leads=300):
        self.rng = rng
        self.munchkin_id = munchkin_id
        self.domain = _domain(munchkin_id)
        self._next_id = {"lead": 100_001, "asset": 900_001}
        self.programs = _programs()
        self.emails = _emails(self.programs)
        self.campaigns = _campaigns(self.programs)
        self.lists = _lists()
        self.pages = _pages(self.domain)
        self.forms = _forms()
        self.links = [Asset(7000 + i, f"https://{self.domain}/{path}") for i, path in enumerate(_LINK_PATHS)]
        self.segmentations = [Asset(8001, "Region"), Asset(8002, "Company Size")]
        self.webhooks = [Asset(8101, "Post to CRM"), Asset(8102, "Enrich via Clearbit")]
        self.users = _users(self.domain)
        assets = (self.programs, self.emails, self.campaigns, self.lists, self.pages, self.forms, self.links)
        self._assets = {asset.id: asset for group in assets for asset in group}
        self._campaign_of = {}
        for campaign in self.campaigns:
            self._campaign_of.setdefault(campaign.program_id, campaign)
        self.leads = {}
        self.active_ids = []
        self.pending = {"sent": [], "delivered": [], "opened": []}
        self._tagged = {}  # tag -> lead ids that once qualified (checked again when recalled)
        for _ in range(leads):
            self.add_lead()

    # --- Leads -------------------------------------------------------------------------------------

    def new_id(self, kind):
        value = self._next_id[kind]
        self._next_id[kind] += 1
        return value

    def add_lead(self):
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        lead_id = self.new_id("lead")
        email = f"{_ascii(first)}.{_ascii(last)}.{lead_id}@example.com".lower()
        lead = Lead(lead_id, first, last, email, score=self.rng.randrange(0, 40))
        for field_id, name, values in TRACKED_FIELDS:
            lead.fields[field_id] = (name, self.rng.choice(values))
        self.leads[lead_id] = lead
        self.active_ids.append(lead_id)
        return lead

    def some_lead(self):
        """An active lead, or None when every lead is gone."""
        while self.active_ids:
            index = self.rng.randrange(len(self.active_ids))
            lead = self.leads[self.active_ids[index]]
            if lead.active:
                return lead
            self._drop_active(index)
        return None

    def retire(self, lead):
        """A deleted or merged-away lead: it never acts again."""
        lead.active = False

    def _drop_active(self, index):
        self.active_ids[index] = self.active_ids[-1]
        self.active_ids.pop()

    def remember(self, tag, lead):
        """Note that ``lead`` qualifies for ``tag`` (on a list, in a nurture program)."""
        tagged = self._tagged.setdefault(tag, [])
        if len(tagged) < MAX_PENDING:
            tagged.append(lead.id)

    def recall(self, tag, qualifies):
        """An active lead noted under ``tag`` for which ``qualifies(lead)`` still holds, or None."""
        tagged = self._tagged.get(tag, [])
        while tagged:
            index = self.rng.randrange(len(tagged))
            lead = self.leads[tagged[index]]
            if lead.active and qualifies(lead):
                return lead
            tagged[index] = tagged[-1]
            tagged.pop()
        return None

    # --- Mail stages: sent -> delivered -> opened (-> clicked) --------------------------------------

    def push(self, stage, lead, mailing):
        pending = self.pending[stage]
        if len(pending) >= MAX_PENDING:
            pending[self.rng.randrange(len(pending))] = (lead.id, mailing.id)
        else:
            pending.append((lead.id, mailing.id))

    def pop(self, stage):
        """A (lead, mailing) at ``stage`` whose lead is still active, or None."""
        pending = self.pending[stage]
        while pending:
            index = self.rng.randrange(len(pending))
            pending[index], pending[-1] = pending[-1], pending[index]
            lead_id, mailing_id = pending.pop()
            lead = self.leads[lead_id]
            if lead.active:
                return lead, self.email(mailing_id)
        return None

    # --- Look-ups ------------------------------------------------------------------------------------

    def asset(self, asset_id):
        return self._assets[asset_id]

    def email(self, email_id):
        return self._assets[email_id]

    def program(self, program_id):
        return self._assets[program_id]

    def campaign_for(self, program_id):
        """The program's sending campaign (the first of its campaigns)."""
        return self._campaign_of[program_id]

    def programs_of(self, *kinds):
        return [program for program in self.programs if program.kind in kinds]

    def user(self, admin=False):
        users = [user for user in self.users if user.admin == admin and not user.api_only]
        return self.rng.choice(users)


_LINK_PATHS = ("pricing", "docs/data-streams", "blog/lead-scoring", "webinars", "contact-sales", "trial")


def _domain(munchkin_id):
    return f"{munchkin_id.lower()}.example.com"


def _ascii(name):
    return name.translate(str.maketrans("éáíóúç", "eaiouc"))


def _programs():
    rows = (
        (1001, "2026-03 Newsletter", "Email Batch Program"),
        (1002, "2026-04 Newsletter", "Email Batch Program"),
        (1003, "Webinar: Data Streams 101", "Event Program"),
        (1004, "Trade Show Berlin", "Event Program"),
        (1005, "Onboarding Nurture", "Engagement Program"),
        (1006, "Re-engagement Nurture", "Engagement Program"),
        (1007, "Product Launch", "Default Program"),
        (1008, "Content Syndication Q2", "Default Program"),
    )
    return [Asset(id_, name, kind) for id_, name, kind in rows]


def _emails(programs):
    emails, next_id = [], 2001
    for program in programs:
        for suffix in ("Invitation", "Reminder", "Follow-up")[: 2 if "Nurture" in program.name else 3]:
            emails.append(Asset(next_id, f"{program.name}.{suffix}", "Email", program.id))
            next_id += 1
    return emails


def _campaigns(programs):
    campaigns, next_id = [], 3001
    for program in programs:
        for verb in ("Send", "Score", "Route"):
            campaigns.append(Asset(next_id, f"{program.name} - {verb}", "Smart Campaign", program.id))
            next_id += 1
    return campaigns


def _lists():
    names = ("Trade show leads Berlin", "Newsletter subscribers", "Webinar registrants", "Do not call", "VIP accounts")
    return [Asset(4001 + i, name, "List") for i, name in enumerate(names)]


def _pages(domain):
    paths = ("", "pricing", "product/data-streams", "lp/webinar-registration", "blog/marketo-tips", "contact")
    return [Asset(5001 + i, f"/{path}", "Landing Page", url=f"https://{domain}/{path}") for i, path in enumerate(paths)]


def _forms():
    names = ("Contact Us", "Webinar Registration", "Whitepaper Download", "Free Trial Sign-up")
    return [Asset(6001 + i, name, "Form") for i, name in enumerate(names)]


def _users(domain):
    names = ("marta.lopez", "jonas.weber", "aiko.sato", "samir.haddad", "claire.martin", "diego.silva")
    users = [User(501 + i, f"{name}@{domain}") for i, name in enumerate(names)]
    users.append(User(520, f"admin@{domain}", admin=True))
    users.append(User(530, f"api.integration@{domain}", api_only=True))
    return users
