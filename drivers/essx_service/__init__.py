"""The service: what makes the driver a program an operator runs.

``app`` (``create_app``), ``web`` (the Web API's routes) and ``params`` (its
parameters), ``startup`` (devices and ports), ``cli`` (the command line),
``check`` (``--check``), ``serve`` (waitress), ``sdnotify`` (systemd),
``logsetup``, ``resources`` (package data: the default configuration, the
OpenAPI document, the pages in ``static/``), observation (``observe``,
``metrics``, loaded at the first scrape by ``exposition``, ``status``) and
``grid`` (the ``essx-grid`` program).
``essx_server.py`` is its entry point.
"""

#: This release's version: the distribution's (pyproject.toml reads it from here),
#: and essx-server's --version and start line.  A constant, not
#: importlib.metadata: the lookup would keep zipfile, csv and importlib's
#: metadata machinery in every server (about 0.9 MB of resident memory).
__version__ = "1.4.0"
