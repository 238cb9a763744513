"""AWS Signature Version 4 for the ``sagemaker`` signing name: verifying and signing.

Both sides build the canonical request with the same helpers, so a request made by
:func:`sign` always passes :meth:`Verifier.verify`, and both agree byte for byte with botocore's
``SigV4Auth`` (the ground truth) for the requests the SageMaker clients send.

Verifying (gateway, every request):

* :func:`parse_authorization` is cheap and needs no body: call it first so that unsigned
  or malformed requests are refused before the body is read.
* :class:`Verifier` then checks the rest and returns the :class:`Principal` that
  signed the request.

Every refusal is a :class:`SigV4Error` carrying the AWS error code and an AWS-style
message; mapping it to an HTTP status and body is the caller's job.

Signing (clients, load generator): :func:`sign` returns the headers to send.

Only ``hashlib``/``hmac`` are used; nothing here does I/O or reads the clock (``now`` is
always passed in).

Modules: ``canonical`` (what both sides share: the credential, the canonical request,
the signing key), ``authorization`` (parsing the header), ``verification``, ``signing``
and ``errors``. Importers use the names exported here.
"""

from gateway.edge.sigv4.authorization import ParsedAuthorization, parse_authorization
from gateway.edge.sigv4.canonical import ALGORITHM, SERVICE, Credential
from gateway.edge.sigv4.errors import SigV4Error
from gateway.edge.sigv4.signing import sign
from gateway.edge.sigv4.verification import Principal, Verifier

__all__ = [
    "ALGORITHM",
    "SERVICE",
    "Credential",
    "ParsedAuthorization",
    "Principal",
    "SigV4Error",
    "Verifier",
    "parse_authorization",
    "sign",
]
