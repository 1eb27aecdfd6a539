"""The `rfsweep` command, one module per command group, thin: parse, call the API, print. The console
script is :func:`rfsweep.cli.main.run`.

May import anything below it; nothing imports it.
"""
