"""Tenant clients: msal tokens, the Exchange admin REST endpoint (InvokeCommand) and Microsoft Graph.

Layers, bottom up: profile (where and as whom) -> auth (msal tokens) -> http (requests + tenacity, throttling,
typed errors) -> exo / graph (typed helpers). The same code path serves a real tenant and the sandbox.
"""
