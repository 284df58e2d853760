"""The J-LIS sandbox: JPKI card issuance, life events, CRL, OCSP, push and basic 4.

Dev, demo and tests only; never deployed. README.md in this folder is the contract.
"""

from tsunagu.sandbox.jlis.app import create_app
from tsunagu.sandbox.jlis.crl import CrlDocument, LargeCrlReport, generate_large_crl
from tsunagu.sandbox.jlis.pki import Hierarchy, KeyPair, create_hierarchy, load_or_create_hierarchy
from tsunagu.sandbox.jlis.push import RetryPolicy
from tsunagu.sandbox.jlis.sandbox import JlisSandbox

__all__ = [
    "CrlDocument",
    "Hierarchy",
    "JlisSandbox",
    "KeyPair",
    "LargeCrlReport",
    "RetryPolicy",
    "create_app",
    "create_hierarchy",
    "generate_large_crl",
    "load_or_create_hierarchy",
]
