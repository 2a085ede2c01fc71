from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from .db import get_db

bp = Blueprint("notes", __name__)


@bp.route("/")
def index():
    notes = get_db().execute("SELECT id, body FROM note ORDER BY id").fetchall()
    return render_template("index.html", notes=notes)


@bp.route("/add", methods=["POST"])
def add():
    body = request.form.get("body", "").strip()
    if not body:
        flash("A note needs some text.")
    else:
        db = get_db()
        db.execute("INSERT INTO note (body) VALUES (?)", (body,))
        db.commit()
    return redirect(url_for("notes.index"))


@bp.route("/api/notes")
def api_notes():
    notes = get_db().execute("SELECT id, body FROM note ORDER BY id").fetchall()
    return jsonify([{"id": row["id"], "body": row["body"]} for row in notes])
