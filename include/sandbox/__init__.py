"""Local stand-ins that speak the real protocols (Salesforce REST over HTTPS, Slack Web API, SMTP)
and the demo org. Used by `make run` and the tests; production code never imports this package,
it only reaches these servers through connection values.
"""
