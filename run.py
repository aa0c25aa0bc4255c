"""Entry point: ``python run.py --config FILE COMMAND``; see ``python run.py --help``."""

if __name__ == "__main__":
    # Imported here, not at the top: the parser pool's forkserver workers import
    # this module too, and need none of the application (about 40 MiB each).
    from aggregator.cli import main

    main()
