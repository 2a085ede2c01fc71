"""orjson: a Rust extension module."""
import datetime

import orjson


def main():
    data = {"when": datetime.datetime(2026, 12, 1, 12, 0), "n": [1, 2.5, None]}
    text = orjson.dumps(data)
    assert orjson.loads(text) == {"when": "2026-12-01T12:00:00", "n": [1, 2.5, None]}
    print("ok orjson", text.decode())


if __name__ == "__main__":
    main()
