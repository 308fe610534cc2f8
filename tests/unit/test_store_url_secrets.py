"""A store URL's password never shows in an error line, whole or in part, whatever it holds (`@`,
`:`, `/`, `?`, `#`, `%`): the URL is redacted on its text before anything parses it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsla.cli import main
from leadsla.errors import StoreConfigError
from leadsla.store.connection import open_store, redact_url, resolve_url

#: Letters that appear nowhere else in the URLs or the error messages below.
SECRET_LETTERS = "жΩßЖ"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://leads:p@ss@db.example/leadsla", "postgresql://leads:***@db.example/leadsla"),
        ("postgresql://leads:s3cr@t/@db.example/leadsla", "postgresql://leads:***@db.example/leadsla"),
        ("postgresql://leads:a:b@c@db.example:5432/x", "postgresql://leads:***@db.example:5432/x"),
        ("postgresql://h/db?user=u&password=p@ss&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        ("mysql://x@y/z", "mysql://x@y/z"),  # a user without a password is shown
        ("sqlite:////data/leads.db", "sqlite:////data/leads.db"),
    ],
)
def test_redaction_keeps_the_user_and_hides_the_whole_password(url, shown) -> None:
    assert redact_url(url) == shown


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    password=st.text(alphabet=SECRET_LETTERS + "@:/?#% ", min_size=1, max_size=16).filter(
        lambda p: any(c in SECRET_LETTERS for c in p)
    ),
    port=st.sampled_from(["", ":5432", ":x"]),
)
def test_no_part_of_a_password_reaches_an_error_line(password, port) -> None:
    url = f"postgresql+psycopg://leads:{password}@db.example{port}/leadsla"
    shown = redact_url(url)
    assert not set(SECRET_LETTERS) & set(shown)
    try:
        resolve_url(url)
    except StoreConfigError as exc:
        assert not set(SECRET_LETTERS) & set(str(exc))
        assert "\n" not in str(exc)


def test_an_unencoded_at_sign_is_refused_with_how_to_encode_it(capsys) -> None:
    assert main(["store", "--url", "postgresql://leads:p@ssжΩ@127.0.0.1:1/leadsla"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "leadsla: error: store URL 'postgresql://leads:***@127.0.0.1:1/leadsla': its user name or "
        "password holds an '@': percent-encode it as %40 (or give the password in the connection's "
        "password field)\n"
    )


def test_a_store_that_cannot_be_reached_names_it_without_the_password() -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store("postgresql+psycopg://leads:p%40ssжΩ@127.0.0.1:1/leadsla")
    message = str(info.value)
    assert message.startswith(
        "cannot open the store at 'postgresql+psycopg://leads:***@127.0.0.1:1/leadsla': "
    )
    assert not set(SECRET_LETTERS) & set(message) and "p%40ss" not in message and "\n" not in message
