"""Jinja2 (and MarkupSafe's C speedups)."""
import jinja2
import markupsafe


def main():
    environment = jinja2.Environment(autoescape=True)
    text = environment.from_string("{% for x in items %}<li>{{ x }}</li>{% endfor %}").render(items=["a", "<b>"])
    assert text == "<li>a</li><li>&lt;b&gt;</li>", text
    import markupsafe._speedups  # the C speedups are there, and used
    assert markupsafe._escape_inner is markupsafe._speedups._escape_inner
    print("ok jinja2", jinja2.__version__, text)


if __name__ == "__main__":
    main()
