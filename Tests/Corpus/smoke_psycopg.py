"""psycopg 3 with its binary package (libpq vendored in psycopg_binary.libs)."""
import psycopg
from psycopg import pq, sql


def main():
    assert pq.__impl__ == "binary", pq.__impl__
    query = sql.SQL("SELECT {fields} FROM {table} WHERE id = {id}").format(
        fields=sql.SQL(", ").join([sql.Identifier("name"), sql.Identifier("email")]),
        table=sql.Identifier("users"), id=sql.Placeholder("id"))
    text = query.as_string(None)
    assert text == 'SELECT "name", "email" FROM "users" WHERE id = %(id)s', text
    print("ok psycopg", psycopg.__version__, pq.version(), text)


if __name__ == "__main__":
    main()
