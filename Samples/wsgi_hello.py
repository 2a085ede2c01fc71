"""A plain WSGI application (PEP 3333), frozen with one spec line: wsgi = "wsgi_hello:application"."""


def application(environ, start_response):
    body = f"Hello, WSGI world! {environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
