"""One module per CLI command.

Each module exposes ``register(subparsers) -> None``: it adds its sub-parser and sets
``func=run`` on it, where ``run(args) -> int`` returns the exit code. The CLI in
``overparam.cli`` lists the modules in ``COMMANDS``; a command stays a thin layer over a
Python function of the library, so everything the CLI does is also a library call.
"""
