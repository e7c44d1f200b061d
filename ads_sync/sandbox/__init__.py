"""A local stand-in for the Google Ads API (gRPC over TLS + an OAuth token endpoint).

For development, demos and tests only: production code never imports this package. It builds the
`google-ads` library's own message classes, so the real client talks to it unchanged.
"""
