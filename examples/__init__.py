"""Sample relying parties of Tsunagu (issue 9): small web apps that use only standard libraries
(Authlib, httpx, Starlette) and the platform's public interfaces. See examples/README.md."""
