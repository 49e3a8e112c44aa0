"""The Flower components of cofedmid: module-level names, where Flower's checker finds them."""
from cofedmid.flower import make_client_app, make_server_app

client_app = make_client_app()
server_app = make_server_app()
