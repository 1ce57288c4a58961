"""Rule conditions: the path syntax and every operator, on events as the evaluator sees them."""

import orjson
import pytest

from alerts.conditions import ConditionError, EventView, compile_all, parse_path, prefilter

QUOTA = {
    "eventid": "e-1",
    "event": {
        "body": {
            "type": "com.adobe.platform.marketo.notification.web_services",
            "data": {"subType": "dailyQuota", "eventAction": {"dailyQuota": 1000000, "percent": 85}},
        }
    },
}
LIST_ADD = {
    "leadId": 1001,
    "activityTypeId": 24,
    "primaryAttributeValue": "VIP prospects",
    "attributes": [{"name": "List ID", "value": 4321}, {"name": "Campaign", "value": "Nightly import"}],
}


def view(raw, **columns):
    return EventView(columns, orjson.dumps(raw).decode())


def matches(conditions, event, watch_lists=None):
    predicate, _ = compile_all(conditions, watch_lists or {})
    return predicate(event)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.eventAction.percent", ("data", ["eventAction", "percent"])),
        ('attributes["List ID"]', ("attributes", ["List ID"])),
        ("data.attributes[0].value", ("data", ["attributes", 0, "value"])),
        ('data["odd \\"key\\""]', ("data", ['odd "key"'])),
        ("lead_id", ("lead_id", [])),
    ],
)
def test_paths_are_read_into_a_root_and_steps(path, expected):
    assert parse_path(path) == expected


@pytest.mark.parametrize("path", ["", "nothing.here", "data.", "lead_id.x", "attributes", "data[x]", "data..a"])
def test_paths_that_cannot_be_read_are_refused_with_a_reason(path):
    with pytest.raises(ConditionError):
        parse_path(path)


def test_a_nested_number_in_a_notification_compares_as_a_number():
    event = view(QUOTA, stream="notification")
    assert matches([{"path": "data.eventAction.percent", "op": "ge", "value": 80}], event)
    assert not matches([{"path": "data.eventAction.percent", "op": "gt", "value": 85}], event)
    assert matches([{"path": "data.eventAction.percent", "op": "lt", "value": "90"}], event)


def test_named_attributes_of_a_legacy_activity_are_found_by_name():
    event = view(LIST_ADD, activity_type_id=24)
    assert matches([{"path": 'attributes["List ID"]', "op": "eq", "value": "4321"}], event)
    assert matches([{"path": 'attributes["Campaign"]', "op": "contains", "value": "nightly"}], event)
    assert not matches([{"path": 'attributes["Missing"]', "op": "present"}], event)
    assert matches([{"path": 'attributes["Missing"]', "op": "present", "negate": True}], event)


def test_ids_sent_as_numbers_on_one_protocol_and_text_on_the_other_are_equal():
    event = view(LIST_ADD, lead_id="1001")
    assert matches([{"path": "data.leadId", "op": "eq", "value": "1001"}], event)
    assert matches([{"path": "lead_id", "op": "in", "value": [7, 1001]}], event)
    assert not matches([{"path": "lead_id", "op": "in", "value": ["1002"]}], event)


def test_a_pattern_is_searched_and_a_bad_one_is_refused():
    event = view(LIST_ADD, primary_attribute="VIP prospects")
    assert matches([{"path": "primary_attribute", "op": "matches", "value": r"^VIP\b"}], event)
    assert not matches([{"path": "primary_attribute", "op": "matches", "value": r"^prospects"}], event)
    with pytest.raises(ConditionError):
        compile_all([{"path": "primary_attribute", "op": "matches", "value": "("}], {})


def test_watch_list_membership_folds_the_case_of_e_mail_addresses_only():
    lists = {"VIP": {"vip prospects".title(), "ceo@example.com"}}
    event = view(LIST_ADD, primary_attribute="Vip Prospects", user_email="CEO@example.com")
    assert matches([{"path": "primary_attribute", "op": "in_watch_list", "value": "VIP"}], event, lists)
    assert matches([{"path": "user_email", "op": "in_watch_list", "value": "VIP"}], event, lists)
    with pytest.raises(ConditionError):
        compile_all([{"path": "lead_id", "op": "in_watch_list", "value": "No such list"}], lists)


def test_all_conditions_must_hold_and_none_means_every_event():
    event = view(LIST_ADD, stream="activity", activity_type_id=24)
    both = [{"path": "stream", "op": "eq", "value": "activity"}, {"path": "activity_type_id", "op": "eq", "value": 25}]
    assert not matches(both, event)
    assert matches([], event)


def test_raw_json_is_parsed_only_when_a_condition_reads_it():
    _, needs_raw = compile_all([{"path": "lead_id", "op": "eq", "value": 1}], {})
    assert not needs_raw
    _, needs_raw = compile_all([{"path": "data.leadId", "op": "eq", "value": 1}], {})
    assert needs_raw


def test_unknown_operators_and_malformed_conditions_are_refused():
    for bad in ([{"path": "lead_id", "op": "like", "value": 1}], [{"path": "lead_id"}], {"path": "x"}, [["x"]]):
        with pytest.raises(ConditionError):
            compile_all(bad, {})


def test_prefilter_pins_streams_and_activity_types_but_not_negations():
    assert prefilter([{"path": "activity_type_id", "op": "in", "value": [8, "27"]}]) == (None, {8, 27})
    assert prefilter([{"path": "stream", "op": "eq", "value": "audit"}]) == ({"audit"}, None)
    assert prefilter([{"path": "stream", "op": "eq", "value": "audit", "negate": True}]) == (None, None)
