"""Subcommands of the ``textseg`` command, one module each (see ``textseg.cli.COMMAND_MODULES``)."""
