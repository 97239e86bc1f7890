"""``python -m covertml``: the same command-line interface as ``covertml``."""

from covertml.cli.main import main

if __name__ == "__main__":
    main()
