"""What every sample relying party shares: login with the Tsunagu idp through Authlib
(:mod:`.oidc`), the broker's public API (:mod:`.broker`) and a small Starlette app around them
(:mod:`.app`). Only public, standard interfaces are used — OpenID Connect discovery, the
authorization code flow with PKCE and ``private_key_jwt``, RFC 9396 ``authorization_details``,
OAuth ``client_credentials`` with RFC 8707 ``resource``, and the broker's documented HTTP API —
so this folder is an integration guide, not a part of the platform."""
