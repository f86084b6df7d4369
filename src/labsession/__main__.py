"""``python -m labsession``: the same command line as ``labsession``."""

from labsession.cli import main

main()
