"""The Flask application: zip-safe, so it runs from inside a frost archive.

Templates and static files are package data, read through importlib.resources rather
than from directories on disk (a frozen package has none).
"""
import importlib.resources
import mimetypes
import sys

import flask
import markupsafe
from flask import Flask, Response, abort, render_template
from jinja2 import FunctionLoader

_files = importlib.resources.files(__name__)


def _template_source(name):
    path = _files.joinpath("templates", *name.split("/"))
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), None, lambda: True


app = Flask(__name__, static_folder=None)
app.jinja_loader = FunctionLoader(_template_source)


@app.route("/")
def index():
    return render_template("index.html", title="Frozen Flask", flask_version=flask.__version__,
                           speedups="C speedups" if "markupsafe._speedups" in sys.modules else "pure Python")


@app.route("/hello/<name>")
def hello(name):
    return render_template("hello.html", title="Hello", name=name)


@app.route("/static/<path:name>")
def static_file(name):
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        abort(404)
    path = _files.joinpath("static", *parts)
    if not path.is_file():
        abort(404)
    return Response(path.read_bytes(), mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream")
