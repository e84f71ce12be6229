"""``python -m ragtune_server``: the same command as ``ragtune serve`` (:mod:`ragtune_server.cli`).

The load script (``eval/load_server.py``) starts the server this way, in its
own process, so the load generator does not share a GIL with the server.
"""

from ragtune_server.cli import main

if __name__ == "__main__":
    main()
