# The PyInstaller side: the same Flask site, served by waitress on the port given.
import sys

from waitress import serve

from site_app import app

serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=4, _quiet=True)
