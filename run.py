"""Entry point: ``python run.py --config FILE COMMAND``; see ``python run.py --help``."""

from aggregator.cli import main

if __name__ == "__main__":
    main()
