"""`python -m local`: run the whole system locally (what `make dev` runs)."""

from local.runtime import main

main()
