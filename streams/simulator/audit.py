"""User Audit Data Stream events: who did what to which Marketo asset.

Components and actions are Adobe's documented snapshot (reference, section 4.1), verbatim. Besides
single actions by a handful of users, two patterns matter to anyone watching the stream: an admin
cloning twenty programs in a row, and a run of login failures (then, usually, a success).
"""

from streams.simulator.population import Asset

COMPONENTS = {
    "Default Program": (
        "clone", "create", "delete", "edit channel", "export", "modify program setup", "modify program token", "rename",
    ),
    "Email": ("approve", "clone", "create", "delete", "edit", "move", "rename", "unapprove"),
    "Email Batch Program": (
        "approve", "childUpdate", "clone", "create", "delete", "edit", "edit channel", "modify program schedule",
        "modify program setup", "modify program token", "rename", "unapprove",
    ),
    "Email Template": (
        "approve", "clone", "create", "delete", "draftCreate", "draftDiscard", "edit", "rename", "unapprove",
    ),
    "Engagement Program": (
        "clone", "create", "delete", "edit channel", "modify program setup", "modify program stream",
        "modify program token", "rename",
    ),
    "Event Program": (
        "clone", "create", "delete", "edit channel", "modify program schedule", "modify program setup",
        "modify program token", "rename",
    ),
    "Folder": ("create", "delete", "edit", "rename"),
    "Form": ("approve", "clone", "create", "delete", "draftCreate", "edit", "move", "rename"),
    "Landing Page": ("approve", "clone", "create", "delete", "draftDiscard", "edit", "move", "rename", "unapprove"),
    "Landing Page Template": (
        "approve", "clone", "create", "delete", "draftCreate", "draftDiscard", "edit", "rename", "unapprove",
    ),
    "List": ("clone", "create", "delete", "rename"),
    "Marketing Folder": ("create", "delete", "edit"),
    "Nurture Program": (
        "clone", "create", "delete", "edit channel", "modify program setup", "modify program stream",
        "modify program token", "rename",
    ),
    "Segment": ("create", "delete", "edit", "rename"),
    "Segmentation": ("approve", "create", "delete", "draftCreated", "draftDiscarded", "rename", "unapprove"),
    "Smart Campaign": (
        "abort", "activate", "clone", "create", "deactivate", "delete", "edit", "modify campaign schedule",
        "modify flow step action", "modify smart list setup", "move", "rename",
    ),
    "Smart List": ("clone", "create", "delete", "edit", "export", "modify smartlist setup", "rename"),
    "Snippet": ("approve", "approve with no-draft", "clone", "create", "delete", "edit", "rename", "unapprove"),
    "Login": ("login success", "login failure"),
    "Role": ("create", "delete", "edit"),
    "User": ("create", "delete", "edit"),
}  # fmt: skip
# How often each component is touched: campaigns and e-mails all day long, roles and users rarely.
WEIGHTS = {
    "Email": 20, "Smart Campaign": 18, "Login": 14, "Landing Page": 8, "Email Batch Program": 6, "Smart List": 5,
    "Form": 4, "Default Program": 4, "Email Template": 2, "Snippet": 2, "Event Program": 2, "Engagement Program": 2,
    "Nurture Program": 1, "List": 3, "Folder": 2, "Marketing Folder": 1, "Segment": 1, "Segmentation": 1,
    "Landing Page Template": 1, "Role": 0.3, "User": 0.5,
}  # fmt: skip
USER_SERVICE = {"Login", "Role", "User"}  # reported by the user service, not the asset service
PROGRAM_COMPONENTS = {
    "Default Program": "Default Program",
    "Email Batch Program": "Email Batch Program",
    "Event Program": "Event Program",
    "Engagement Program": "Engagement Program",
    "Nurture Program": "Engagement Program",
}
CLONE_BURST = 20  # an admin cloning twenty programs
CLONE_BURST_CHANCE = 0.005
LOGIN_FAILURE_CHANCE = 0.15  # of logins: a run of failures, mostly followed by a success


def type_for(component):
    """``com.adobe.platform.marketo.audit.user.<component lowercased, spaces removed>``."""
    return "com.adobe.platform.marketo.audit.user." + "".join(component.lower().split())


class AuditMaker:
    """Audit events as (delay in seconds, source, data) lists: one action, or a burst of them."""

    def __init__(self, population, rng, ims_org):
        self.pop = population
        self.rng = rng
        self.ims_org = ims_org
        self._components = list(WEIGHTS)
        self._weights = list(WEIGHTS.values())

    def make(self):
        if self.rng.random() < CLONE_BURST_CHANCE:
            return self._clone_burst()
        component = self.rng.choices(self._components, self._weights)[0]
        if component == "Login":
            return self._login()
        user = self.rng.choice(self.pop.users)
        action = self.rng.choice(COMPONENTS[component])
        return [(0.0, *self._event(component, self._component_id(component, action), action, user))]

    def _event(self, component, component_id, action, user):
        source = "urn:asset_api" if user.api_only else "urn:mlm"
        if component in USER_SERVICE:
            source = "urn:userservice"
        data = {
            "componentId": component_id,
            "componentType": component,
            "eventAction": action,
            "munchkinId": self.pop.munchkin_id,
            "imsOrgId": self.ims_org,
            "userId": user.email,
        }
        return source, data

    def _clone_burst(self):
        """An admin clones twenty programs, a second or two apart."""
        admin = self.pop.user(admin=True)
        template = self.rng.choice(self.pop.programs_of("Default Program", "Event Program"))
        events, delay = [], 0.0
        for _ in range(CLONE_BURST):
            events.append((delay, *self._event(template.kind, self.pop.new_id("asset"), "clone", admin)))
            delay += self.rng.uniform(0.5, 2.0)
        return events

    def _login(self):
        user = self.pop.user()
        if self.rng.random() >= LOGIN_FAILURE_CHANCE:
            return [(0.0, *self._event("Login", user.id, "login success", user))]
        failures = self.rng.randrange(2, 6)
        events = [
            (i * self.rng.uniform(3, 8), *self._event("Login", user.id, "login failure", user)) for i in range(failures)
        ]
        if self.rng.random() < 0.8:
            events.append((failures * 8.0, *self._event("Login", user.id, "login success", user)))
        return events

    def _component_id(self, component, action):
        if action in ("create", "clone"):
            return self.pop.new_id("asset")
        return self.rng.choice(self._assets(component)).id

    def _assets(self, component):
        pop = self.pop
        by_component = {
            "Email": pop.emails,
            "Smart Campaign": pop.campaigns,
            "Landing Page": pop.pages,
            "Form": pop.forms,
            "List": pop.lists,
            "Segmentation": pop.segmentations,
            "User": [Asset(user.id, user.email) for user in pop.users],
        }
        if component in PROGRAM_COMPONENTS:
            return pop.programs_of(PROGRAM_COMPONENTS[component])
        if component in by_component:
            return by_component[component]
        # Templates, snippets, smart lists, folders, segments, roles: ids only (no state kept about them).
        base = 10_000 + 1000 * list(COMPONENTS).index(component)
        return [Asset(base + i, component) for i in range(1, 12)]
