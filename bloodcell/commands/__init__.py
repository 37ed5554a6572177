"""The command line's commands, one module each: `add_arguments(parser)` declares the
command's options and `run(args) -> int` carries it out.

A module imports only what its options need at the top (never Keras or TensorFlow), and the
rest inside `run`: `python -m bloodcell --help`, `archs`, `runs` and `table` answer at once.
Shared helpers live in `bloodcell.commands.common`; the table of commands in `bloodcell.cli`.
"""
