"""A Flask site served through the ISAPI WSGI adapter.

Frozen with `frost build Bundles/flask_site.toml`. Run as the console
(`dist/flask_site/flask_site selftest`) it renders its pages through Flask's test
client, which shows the templates and static files load from the bundle's archive.
"""
import sys

from isapi.wsgi import ISAPIThreadPoolHandler

from site_app import app


def __ExtensionFactory__():
    return ISAPIThreadPoolHandler(app)


if __name__ == "__main__":
    if sys.argv[1:] != ["selftest"]:
        raise SystemExit("usage: flask_site selftest")
    client = app.test_client()
    for path in ("/", "/hello/frost", "/static/style.css", "/static/../site_app/__init__.py", "/missing"):
        response = client.get(path)
        print(path, response.status_code, response.mimetype, len(response.data))
        if path == "/":
            print(response.get_data(as_text=True))
