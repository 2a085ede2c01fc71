"""The benchmark's Flask page: a template rendered for every request."""
from flask import Flask, render_template_string

app = Flask(__name__)
PAGE = """<!doctype html><title>{{ title }}</title><h1>{{ title }}</h1>
<table>{% for row in rows %}<tr><td>{{ row.id }}</td><td>{{ row.name|e }}</td><td>{{ "%.2f"|format(row.price) }}</td></tr>{% endfor %}</table>
"""
ROWS = [{"id": i, "name": f"item <{i}>", "price": i * 1.25} for i in range(20)]


@app.route("/")
def index():
    return render_template_string(PAGE, title="Price list", rows=ROWS)
