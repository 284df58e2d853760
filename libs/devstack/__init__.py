"""Development tooling: the embedded stack (tansu, SoftHSM2, credentials, services) and its CLI.

Never imported by a service at run time; the test fixtures and ``tsunagu dev up`` use it.
"""
