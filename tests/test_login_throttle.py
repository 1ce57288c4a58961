"""Password guessing is throttled: a (name, address) pair, and one address over many names."""

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client

from tests.processes import bare_env, daphne, manage, post_login, stop_embedded_redis

RIGHT = "right-pw-1"
ATTACKER = "203.0.113.9"
ADMIN_DESK = "198.51.100.7"


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", RIGHT)


def log_in(client, password, username="admin", address=ATTACKER, path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password, "next": "/"}, REMOTE_ADDR=address)


def logged_in(client):
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_that_name_from_that_address_and_the_page_says_so(client, admin, settings):
    answers = [log_in(client, f"guess-{n}").status_code for n in range(settings.AXES_FAILURE_LIMIT)]
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    response = log_in(client, RIGHT)
    assert response.status_code == 429
    assert not logged_in(client)
    text = response.content.decode()
    assert "Too many failed log-ins as admin from your address" in text
    assert f"Try again in {settings.FLUXO_LOGIN_LOCKOUT_MINUTES} minutes, or ask an admin" in text
    assert AccessAttempt.objects.get().ip_address == ATTACKER


def test_two_hundred_guesses_do_not_get_in_with_the_right_password_afterwards(client, admin):
    for n in range(200):
        log_in(client, f"guess-{n}")
    assert log_in(client, RIGHT).status_code == 429
    assert not logged_in(client)


def test_somebody_guessing_elsewhere_cannot_lock_admin_out_of_their_own_address(client, admin):
    for n in range(10):
        log_in(client, f"guess-{n}", address=ATTACKER)
    desk = Client()
    response = log_in(desk, RIGHT, address=ADMIN_DESK)
    assert response.status_code == 302
    assert logged_in(desk)


def test_the_admin_login_page_is_throttled_too(client, admin, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{n}", path="/admin/login/")
    response = log_in(client, RIGHT, path="/admin/login/")
    assert response.status_code == 429
    assert "Too many failed log-ins as admin" in response.content.decode()
    assert not logged_in(client)


def test_one_address_trying_many_names_is_slowed_down(client, admin, settings):
    # Fewer guesses per name than the pair limit, but over enough names to reach the address limit.
    per_name = settings.AXES_FAILURE_LIMIT - 1
    names = -(-settings.FLUXO_LOGIN_ADDRESS_FAILURE_LIMIT // per_name)
    for name in range(names):
        for n in range(per_name):
            log_in(client, f"guess-{n}", username=f"user{name}")
    response = log_in(client, RIGHT)
    assert response.status_code == 429
    assert "Too many failed log-ins from your address" in response.content.decode()
    assert log_in(Client(), RIGHT, address=ADMIN_DESK).status_code == 302


def test_a_successful_login_forgets_that_names_failures_from_that_address_only(client, admin, settings):
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, f"guess-{n}")
        log_in(client, f"guess-{n}", username="somebody-else")
    assert log_in(client, RIGHT).status_code == 302
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["somebody-else"]


def test_an_admin_sees_a_lockout_in_the_admin_and_lifts_it_there(client, admin, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{n}")
    staff = Client()
    staff.force_login(admin)
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert ATTACKER in listing.content.decode()
    attempt = AccessAttempt.objects.get()
    staff.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert not AccessAttempt.objects.exists()
    assert log_in(client, RIGHT).status_code == 302


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("axes_reset_username", ["admin"]),
        ("axes_reset_ip_username", [ATTACKER, "admin"]),
        ("axes_reset_ip", [ATTACKER]),
        ("axes_reset", []),
    ],
)
def test_an_admin_lifts_a_lockout_with_a_command(client, admin, settings, command, arguments):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{n}")
    assert log_in(client, RIGHT).status_code == 429
    call_command(command, *arguments)
    assert log_in(client, RIGHT).status_code == 302


# --- The real web process (daphne runs Django's asynchronous middleware path) ------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("throttle")
    env = bare_env(var_dir)
    manage(env, "migrate", "--noinput")
    manage(
        env,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_user('ada', password={RIGHT!r})",
    )
    with daphne(env) as base:
        yield base, env
    stop_embedded_redis(var_dir)


@pytest.mark.slow
def test_the_web_process_answers_a_locked_out_login_with_the_page_that_says_so(site):
    base, env = site
    for n in range(5):
        post_login(base, "ada", f"guess-{n}")
    status, _headers, body = post_login(base, "ada", RIGHT)
    assert status == 429
    assert b"Too many failed log-ins as ada from your address" in body
    assert b"Try again in 15 minutes" in body
    assert manage(env, "axes_list_attempts").split() == ["127.0.0.1", "ada", "6"]
