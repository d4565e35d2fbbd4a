from convscope.cli import main

if __name__ == "__main__":  # not again in a spawned answer process (web/pool.py)
    raise SystemExit(main())
