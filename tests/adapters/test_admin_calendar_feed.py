"""The secret calendar feed URL served by the admin role (the token is the credential)."""

from admin_app import ALICE, admin_setup  # noqa: F401
from icalendar import Calendar

from courriel.admin.services import calendar as calendar_service


def test_feed_served_by_token_only(admin_setup):  # noqa: F811
    token = calendar_service.issue_feed_token(admin_setup.db, ALICE[0])
    with admin_setup.client() as client:
        served = client.get(f"/calendar/feed/{token}.ics")
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/calendar")
        assert Calendar.from_ical(served.content).name == "VCALENDAR"
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert client.get(f"/calendar/feed/{wrong}.ics").status_code == 404
        calendar_service.revoke_feed_token(admin_setup.db, ALICE[0])
        assert client.get(f"/calendar/feed/{token}.ics").status_code == 404
