"""A small notes site written the way Flask's tutorial writes one: an application factory,
templates and static files beside the code, a form POST, a JSON endpoint, and SQLite.

Nothing here knows about frost: the database lives in the state directory the loader
exports (FROST_STATE_DIR), or in Flask's instance folder when run with `flask run`.
"""
import os

from flask import Flask


def create_app():
    app = Flask(__name__, instance_relative_config=True)
    state = os.environ.get("FROST_STATE_DIR", app.instance_path)
    os.makedirs(state, exist_ok=True)
    app.config.from_mapping(SECRET_KEY="dev", DATABASE=os.path.join(state, "flaskr.sqlite"))

    from . import db, notes
    db.init_app(app)
    app.register_blueprint(notes.bp)
    return app
