"""Lambda function URLs with `AuthType: AWS_IAM` (moto serves no function URLs at all).

AWS verifies the request's SigV4 signature (service `lambda`) before the function runs and puts
the caller in `requestContext.authorizer.iam`; an unsigned or badly signed request gets 403
`{"Message":"Forbidden"}` and the function never runs. The replica does the same: it recomputes
the signature over the `SignedHeaders` the request names, with the secret every replica client
uses (`testing`: moto ignores signatures, so the replica's clients all sign with it), checks the
request time within AWS's 5-minute window, and resolves the access key to the caller the way
moto's STS `GetCallerIdentity` does (an IAM user's key → that user, an assumed role's → the
session).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qsl, quote

from .context import CTX, utcnow

SECRET = "testing"
MAX_SKEW = datetime.timedelta(minutes=5)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$")


class Forbidden(Exception):
    """Why AWS would refuse the request (logged by the replica; the caller sees only 403)."""


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        out["content-length"] = environ["CONTENT_LENGTH"]
    return out


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_uri(path: str) -> str:
    # Every service but S3 signs each segment URI-encoded twice (the SDKs' "double" mode).
    return "/".join(quote(quote(seg, safe="-_.~"), safe="-_.~") for seg in path.split("/")) or "/"


def _canonical_query(qs: str) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(qs, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def verify(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The `requestContext.authorizer` of a correctly signed request; `Forbidden` otherwise."""
    headers = _headers(environ)
    m = _AUTH.match(headers.get("authorization", ""))
    if not m:
        raise Forbidden("no SigV4 Authorization header")
    if m["service"] != "lambda" or m["region"] != CTX.region:
        raise Forbidden(f"signed for {m['service']} in {m['region']}, not lambda in {CTX.region}")
    amz_date = headers.get("x-amz-date", "")
    try:
        at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Forbidden("no valid X-Amz-Date") from None
    if abs(utcnow() - at) > MAX_SKEW or amz_date[:8] != m["date"]:
        raise Forbidden(f"request time {amz_date} is outside the 5-minute window")
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise Forbidden("host and x-amz-date must be signed")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise Forbidden(f"signed headers not sent: {missing}")
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    if payload != hashlib.sha256(body).hexdigest() and payload != "UNSIGNED-PAYLOAD":
        raise Forbidden("x-amz-content-sha256 does not match the body")
    canonical = "\n".join([
        environ.get("REQUEST_METHOD", "GET"),
        _canonical_uri(environ.get("PATH_INFO", "/")),
        _canonical_query(environ.get("QUERY_STRING", "")),
        "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed),
        m["signed"],
        payload,
    ])
    scope = f"{m['date']}/{m['region']}/{m['service']}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + SECRET).encode(), m["date"]), m["region"]), m["service"]), "aws4_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        raise Forbidden("the signature does not match")
    from .cloudtrail import identity
    who = identity(m["key"], CTX.account, CTX.region)
    return {"iam": {"accessKey": m["key"], "accountId": who["accountId"], "callerId": who["principalId"],
                    "cognitoIdentity": None, "principalOrgId": None, "userArn": who["arn"],
                    "userId": who["principalId"]}}
