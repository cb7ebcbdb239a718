"""``python -m artylyze``: the same command line as ``artylyze``, for when the script is not
on PATH (a cron job, another venv's interpreter)."""

from artylyze.cli.main import main

if __name__ == "__main__":
    main()
