"""python-dateutil and tzdata: time-zone conversion without the system's zoneinfo."""
import datetime
import zoneinfo

from dateutil import parser, relativedelta, tz


def main():
    moment = parser.isoparse("2026-07-01T12:00:00+00:00")
    paris = zoneinfo.ZoneInfo("Europe/Paris")  # from the tzdata package
    assert moment.astimezone(paris).hour == 14
    tokyo = tz.gettz("Asia/Tokyo")
    assert tokyo is not None and moment.astimezone(tokyo).hour == 21
    later = moment + relativedelta.relativedelta(months=+1, day=31)
    assert later.date() == datetime.date(2026, 8, 31)
    print("ok dateutil", moment.astimezone(paris).isoformat(), moment.astimezone(tokyo).isoformat())


if __name__ == "__main__":
    main()
