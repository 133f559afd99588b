"""`python -m hyperfollow.core` = the `hyperfollow` command (useful where the script is not on PATH)."""

from hyperfollow.core.cli import main

main()
