"""`python -m sdcli` entry point."""

from sdcli.cli import main

if __name__ == "__main__":
    main()
