"""requests: a real request to a local server (urllib3, idna, charset_normalizer, certifi)."""
import http.server
import threading

import requests


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"hello": "frost"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    response = requests.get(f"http://127.0.0.1:{server.server_address[1]}/x", timeout=5)
    assert response.status_code == 200 and response.json() == {"hello": "frost"}, response.text
    assert requests.certs.where().endswith(".pem")
    print("ok requests", requests.__version__, response.json())


if __name__ == "__main__":
    main()
