"""Changes that may change which sources a person sees: a source added or removed, its viewer groups,
a person's groups or account. After commit, every live socket is told to check again."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from dashboard import broadcast
from streams.models import Source


def _notice(update_fields=None, **_kwargs):
    # A login saves last_login only: nothing that decides what a person sees.
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    transaction.on_commit(broadcast.sources_changed)


def _membership_changed(action, **_kwargs):
    if action in ("post_add", "post_remove", "post_clear"):
        transaction.on_commit(broadcast.sources_changed)


def connect():
    user_model = get_user_model()
    for model in (Source, user_model):
        post_save.connect(_notice, sender=model, dispatch_uid=f"fluxo-sources-changed-save-{model.__name__}")
        post_delete.connect(_notice, sender=model, dispatch_uid=f"fluxo-sources-changed-delete-{model.__name__}")
    for through in (Source.viewer_groups.through, user_model.groups.through):
        m2m_changed.connect(
            _membership_changed, sender=through, dispatch_uid=f"fluxo-sources-changed-{through.__name__}"
        )
