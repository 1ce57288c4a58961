"""streams.store's binary text[] parameters: what PostgreSQL reads back is exactly what was sent."""

import psycopg
import pytest
from django.db import connection

from streams.store import _TextArray, _TextArrayDumper

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the dumper is PostgreSQL's binary format"),
]

COLUMNS = {
    "empty": [],
    "one value": ["a"],
    "all the same": ["activity"] * 500,
    "all empty": [""] * 7,
    "with nulls": [None, "x", None, ""],
    "only nulls": [None, None],
    "mixed": ["", "é", "emoji 🎉", "a" * 5000, 'quote " comma , brace { }', "\\", "NULL", " "],
}


def _read_back(values, own_dumper):
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        if own_dumper:
            cursor.adapters.register_dumper(_TextArray, _TextArrayDumper)
            values = _TextArray(values)
        cursor.execute("SELECT %b::text[], pg_typeof(%b::text[])::text", [values, values])
        return cursor.fetchone()


@pytest.mark.parametrize("name", COLUMNS)
def test_a_column_reads_back_as_sent(name):
    values = COLUMNS[name]
    assert _read_back(values, own_dumper=True) == (values, "text[]")


@pytest.mark.parametrize("name", COLUMNS)
def test_it_is_what_psycopgs_own_list_dumper_sends(name):
    values = COLUMNS[name]
    assert _read_back(values, own_dumper=True) == _read_back(values, own_dumper=False)


def test_a_tuple_column_is_sent_like_a_list():
    assert _read_back(("b", None, "c"), own_dumper=True) == (["b", None, "c"], "text[]")
