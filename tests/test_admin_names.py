"""The admin reads as English: proper plurals, and Fluxo's internal tables off its index."""

import re

import pytest
from django.apps import apps
from django.core.management import call_command

OUR_APPS = ("streams", "dashboard", "alerts")
INTERNAL = ("evaluated batches", "evaluator floors", "window counts", "deadlines", "delivery attempts", "alert events")


def naive_plural(name):
    return name + "s"


@pytest.mark.parametrize("model", [m for m in apps.get_models() if m._meta.app_label in OUR_APPS], ids=str)
def test_every_model_has_a_proper_plural(model):
    singular, plural = str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
    if re.search(r"([^aeiou]y|ch|sh|s|x|person)$", singular):  # where adding an "s" goes wrong
        assert plural != naive_plural(singular)
    assert not re.search(r"\b(api|adobe|munchkin)\b", plural)  # names keep their capitals


def test_the_admin_index_says_deliveries_and_keeps_internal_tables_off_it(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert ">Deliveries<" in html and "Deliverys" not in html
    assert ">API tokens<" in html and ">Adobe registrations<" in html and ">Foreign Munchkin IDs<" in html
    for name in INTERNAL:
        assert f">{name.capitalize()}<" not in html
    # Still at their URLs for whoever may look.
    assert admin_client.get("/admin/alerts/evaluatedbatch/").status_code == 200
    assert admin_client.get("/admin/alerts/deliveryattempt/").status_code == 200


def test_the_new_names_have_their_migrations(db):
    call_command("makemigrations", *OUR_APPS, "--check", "--dry-run", verbosity=0)
