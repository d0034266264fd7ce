"""`python -m ponder ...` runs the `ponder` command line."""
from ponder.cli import main

main()
