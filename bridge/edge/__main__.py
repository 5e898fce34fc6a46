"""`python -m bridge.edge`: the same as `plant bridge edge`."""

import typer

from bridge.edge.cli import edge

if __name__ == "__main__":
    typer.run(edge)
