"""`manage.py add_source`: the command an automation uses to add a Marketo instance."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from streams.models import Source, SourceToken, hash_secret

pytestmark = pytest.mark.django_db


def add_source(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("add_source", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_json_output_is_exactly_one_document_with_paths_and_the_generated_token(client):
    out, _ = add_source("Acme", "--munchkin-id", "123-abc-456", "--adobe-client-id", "cid", "--json")
    document = json.loads(out)
    source = Source.objects.get()
    assert document == {
        "id": source.id,
        "name": "Acme",
        "munchkin_id": "123-ABC-456",
        "adobe_client_id": "cid",
        "delivers_for": [],
        "api_token": document["api_token"],
        "endpoints": {
            "adobe_io": f"/ingest/{source.ingest_key}/adobe-io/",
            "legacy_push": f"/ingest/{source.ingest_key}/marketo-push/",
        },
    }
    response = client.post(
        document["endpoints"]["legacy_push"],
        b'{"activities": []}',
        content_type="application/json",
        HTTP_AUTHORIZATION=document["api_token"],
    )
    assert response.status_code == 200


def test_a_given_token_is_used_and_not_printed():
    out, _ = add_source("Acme", "--munchkin-id", "123-ABC-456", "--api-token", "my-own-token-1234", "--json")
    assert "api_token" not in json.loads(out)
    assert SourceToken.objects.get().token_hash == hash_secret("my-own-token-1234")


def test_a_duplicate_name_is_refused_clearly():
    add_source("Acme", "--munchkin-id", "123-ABC-456")
    with pytest.raises(CommandError, match="a source named 'Acme' exists already"):
        add_source("Acme", "--munchkin-id", "999-ABC-456")


@pytest.mark.parametrize("munchkin", ["123-ABC", "12-ABC-456", "123-AB1-456", "abc-def-ghi", ""])
def test_a_malformed_munchkin_id_is_refused_clearly(munchkin):
    with pytest.raises(CommandError, match="is not a Munchkin ID"):
        add_source("Acme", "--munchkin-id", munchkin)
    assert Source.objects.count() == 0
