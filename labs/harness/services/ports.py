"""Ports on 127.0.0.1, where every service of the lab listens. Standard library only: `make doctor`
imports this before anything is installed."""
import socket


def port_is_free(port):
    """Whether a server could listen on 127.0.0.1:``port`` now.

    The probe binds the way the servers do, with SO_REUSEADDR (Django's runserver, Flower's
    Tornado): connections of a server that has just stopped linger in TIME_WAIT for a minute
    and do not keep its port, while anything listening there does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
