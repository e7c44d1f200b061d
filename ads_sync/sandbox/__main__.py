"""`python -m ads_sync.sandbox`: run the Google Ads sandbox until interrupted."""

from ads_sync.sandbox.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
