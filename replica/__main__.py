"""`python -m replica` runs the command line."""

from replica.cli import main

if __name__ == "__main__":
    main()
