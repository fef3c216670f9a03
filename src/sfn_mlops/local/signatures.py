"""AWS request signatures, verified as AWS verifies them, with botocore's own signing code.

A request names its key (``Credential=AKID/date/region/service/aws4_request``); the service
looks the key up (``credentials.KeyStore``), computes the signature botocore would have made
over the request as received, with that key's secret, and compares (``hmac.compare_digest``).
botocore's ``SigV4Auth``/``S3SigV4Auth`` build the canonical request; only the two things a
signer chooses are fixed from the request: which headers were signed (``SignedHeaders``) and
the time stamp (``X-Amz-Date``). Derived signing keys are cached per secret, day, region and
service, as SDKs cache them, so a verification costs about two HMACs and a SHA-256.

Covered: SigV4 in the ``Authorization`` header and in the query string (presigned URLs), S3's
payload variants (a SHA-256 checked against the body, ``UNSIGNED-PAYLOAD``, ``aws-chunked``
uploads whose ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` chunk signatures are each verified, and
``STREAMING-UNSIGNED-PAYLOAD-TRAILER``), and S3's signature version 2 (``Authorization: AWS``
and presigned ``Signature=``), which boto3 can still be configured to use. Each failure is
answered with the code and status the service's protocol family uses (``aws_error``).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_tz
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from botocore.auth import (
    EMPTY_SHA256_HASH,
    SIGV4_TIMESTAMP,
    UNSIGNED_PAYLOAD,
    HmacV1Auth,
    S3SigV4Auth,
    SigV4Auth,
)
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from localstack.http import Request

from sfn_mlops import settings
from sfn_mlops.local.credentials import AccessKey, KeyStore
from sfn_mlops.local.errors import AwsError

#: AWS accepts a request time stamp up to 15 minutes from its own clock, either way; a
#: presigned URL lives at most 7 days. https://docs.aws.amazon.com/IAM/latest/UserGuide/
#: reference_sigv-troubleshooting.html, https://docs.aws.amazon.com/AmazonS3/latest/API/
#: sigv4-query-string-auth.html
SKEW_SECONDS = 15 * 60
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
ALGORITHM = "AWS4-HMAC-SHA256"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

# What went wrong, whatever the service; ``aws_error`` names it in the service's own words.
MALFORMED = "malformed"
TOKEN = "token"
UNKNOWN_KEY = "unknown-key"
WRONG_REGION = "wrong-region"
SKEWED = "skewed"
EXPIRED = "expired"
MISMATCH = "mismatch"
CONTENT_SHA256 = "content-sha256"
NOT_EMULATED = "not-emulated"


class AuthFailure(Exception):
    """A request the service does not authenticate; ``detail`` goes into the message."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    key: AccessKey
    body: bytes | None = None  # an aws-chunked body, decoded: what the operation reads


class _Received:
    """What verification reads of a request, read once: werkzeug's case-insensitive header
    look-ups and its query parsing cost more than the HMACs (measured)."""

    def __init__(self, request: Request) -> None:
        self.method = request.method
        self.path = request.path  # as received: the gateway builds its Request from the target
        self.query = request.query_string.decode("latin-1")
        self.headers = {name.lower(): value for name, value in request.headers.items()}
        self.body = request.get_data()
        self.pairs = _query_pairs(self.query)
        self.args = dict(reversed(self.pairs))  # the first value of each name


class _SigV4(NamedTuple):  # a tuple: made once per request, a frozen dataclass costs more
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # yyyymmddThhmmssZ
    expires: int | None = None  # presigned: seconds from ``timestamp``

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


class Verifier:
    """Authenticates the requests of one workspace's service."""

    def __init__(self, keys: KeyStore, region: str, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.region = region
        self.clock = clock

    def verify(self, request: Request, signing_name: str) -> Verified:
        """The caller's key, or ``AuthFailure`` saying why the request is refused."""
        received = _Received(request)
        if "x-amz-security-token" in received.headers or "X-Amz-Security-Token" in received.args:
            raise AuthFailure(TOKEN)
        if _is_sigv2(received):
            return Verified(self._verify_sigv2(received))
        signed = _parse_sigv4(received)
        key = self._key(signed.access_key_id)
        self._check_scope(signed)
        self._check_time(signed)
        s3 = signing_name == "s3"
        expected = _recompute(received, signed, key, s3=s3)
        if not hmac.compare_digest(expected, signed.signature):
            raise AuthFailure(MISMATCH)
        if s3 and signed.expires is None:
            return Verified(key, _s3_payload(received, signed, key))
        return Verified(key)

    def _key(self, access_key_id: str) -> AccessKey:
        key = self.keys.lookup(access_key_id)
        if key is None:
            raise AuthFailure(UNKNOWN_KEY, access_key_id)
        return key

    def _check_scope(self, signed: _SigV4) -> None:
        if signed.terminator != "aws4_request":
            raise AuthFailure(
                MALFORMED, "Credential should be scoped with a valid terminator: 'aws4_request'"
            )
        if signed.region != self.region:
            raise AuthFailure(WRONG_REGION, signed.region)
        if signed.date != signed.timestamp[:8]:
            raise AuthFailure(
                MISMATCH,
                f"Date in Credential scope does not match YYYYMMDD "
                f"from ISO-8601 version of date from HTTP: "
                f"'{signed.date}' != '{signed.timestamp[:8]}'",
            )

    def _check_time(self, signed: _SigV4) -> None:
        stamp = _epoch(signed.timestamp)
        now = self.clock()
        if signed.expires is not None:
            if not 0 < signed.expires <= MAX_PRESIGNED_SECONDS:
                raise AuthFailure(MALFORMED, "X-Amz-Expires must be between 1 and 604800 s")
            if now > stamp + signed.expires or stamp - now > SKEW_SECONDS:
                raise AuthFailure(EXPIRED, "Request has expired")
        elif abs(now - stamp) > SKEW_SECONDS:
            raise AuthFailure(SKEWED, _skew_message(signed.timestamp, now))

    def _verify_sigv2(self, request: _Received) -> AccessKey:
        presigned = "Signature" in request.args
        if presigned:
            key_id, signature = request.args.get("AWSAccessKeyId", ""), request.args["Signature"]
            date = request.args.get("Expires", "")
        else:
            key_id, _, signature = request.headers["authorization"][4:].strip().partition(":")
            date = "" if "x-amz-date" in request.headers else request.headers.get("date", "")
        key = self._key(key_id)
        self._check_sigv2_time(request, presigned, date)
        expected = _recompute_sigv2(request, key, date, presigned)
        if not hmac.compare_digest(expected, signature):
            raise AuthFailure(MISMATCH)
        return key

    def _check_sigv2_time(self, request: _Received, presigned: bool, date: str) -> None:
        now = self.clock()
        if presigned:
            if not date.isdigit() or now > int(date):
                raise AuthFailure(EXPIRED, "Request has expired")
            return
        stamp = _http_date(request.headers.get("x-amz-date") or date)
        if stamp is None:
            raise AuthFailure(
                MALFORMED, "AWS authentication requires a valid Date or x-amz-date header"
            )
        if abs(now - stamp) > SKEW_SECONDS:
            raise AuthFailure(
                SKEWED, _skew_message(time.strftime(SIGV4_TIMESTAMP, time.gmtime(stamp)), now)
            )


# ------------------------------------------------------------------ what the request says
# (A session token is refused in ``verify``: the minted keys are long-term keys, so a token
# with them is not one AWS issued.)
def _is_sigv2(request: _Received) -> bool:
    return request.headers.get("authorization", "").startswith("AWS ") or (
        "Signature" in request.args and "X-Amz-Signature" not in request.args
    )


def _parse_sigv4(request: _Received) -> _SigV4:
    if "X-Amz-Signature" in request.args:
        return _parse_presigned(request.args)
    algorithm, _, rest = request.headers.get("authorization", "").partition(" ")
    if algorithm != ALGORITHM:
        raise AuthFailure(MALFORMED, f"Unsupported Authorization Type: {algorithm!r}")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)
    ]
    if missing:
        raise AuthFailure(MALFORMED, f"Authorization header requires '{missing[0]}' parameter")
    timestamp = request.headers.get("x-amz-date") or _sigv4_date(request.headers.get("date"))
    if not timestamp:
        raise AuthFailure(
            MALFORMED,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header",
        )
    return _signed(fields["Credential"], fields["SignedHeaders"], fields["Signature"], timestamp)


def _parse_presigned(args: Mapping[str, str]) -> _SigV4:
    if args.get("X-Amz-Algorithm") != ALGORITHM:
        raise AuthFailure(MALFORMED, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    try:
        expires = int(args.get("X-Amz-Expires", ""))
    except ValueError as err:
        raise AuthFailure(MALFORMED, "X-Amz-Expires should be a number") from err
    return _signed(
        args.get("X-Amz-Credential", ""),
        args.get("X-Amz-SignedHeaders", ""),
        args["X-Amz-Signature"],
        args.get("X-Amz-Date", ""),
        expires,
    )


def _signed(
    credential: str, headers: str, signature: str, timestamp: str, expires: int | None = None
) -> _SigV4:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise AuthFailure(
            MALFORMED, f"Credential should be scoped to a valid region, not {credential!r}"
        )
    if _epoch_or_none(timestamp) is None:
        raise AuthFailure(MALFORMED, f"X-Amz-Date {timestamp!r} is not yyyymmddThhmmssZ")
    key_id, date, region, service, terminator = parts
    signed_headers = tuple(headers.lower().split(";"))
    return _SigV4(
        key_id, date, region, service, terminator, signed_headers, signature, timestamp, expires
    )


_TIMESTAMP = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")


@lru_cache(maxsize=256)  # the stamps of one second's requests are one stamp
def _epoch_or_none(timestamp: str) -> float | None:
    """Seconds since the epoch of a ``yyyymmddThhmmssZ`` stamp (``strptime`` costs 20 us)."""
    match = _TIMESTAMP.fullmatch(timestamp)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def _epoch(timestamp: str) -> float:
    value = _epoch_or_none(timestamp)
    assert value is not None  # checked when parsed
    return value


def _http_date(value: str | None) -> float | None:
    parsed = parsedate_tz(value) if value else None
    if parsed is None:
        return _epoch_or_none(value or "")  # x-amz-date may be ISO 8601 basic, as SigV4's
    return float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))


def _sigv4_date(value: str | None) -> str:
    stamp = _http_date(value)
    return time.strftime(SIGV4_TIMESTAMP, time.gmtime(stamp)) if stamp is not None else ""


def _skew_message(timestamp: str, now: float) -> str:
    """AWS's words for a time stamp out of the window, e.g. ``Signature expired: 20260101T000000Z
    is now earlier than 20260101T010000Z (20260101T011500Z - 15 min.)``."""
    stamp = _epoch(timestamp)
    fmt = lambda t: time.strftime(SIGV4_TIMESTAMP, time.gmtime(t))  # noqa: E731
    if stamp < now:
        return (
            f"Signature expired: {timestamp} is now earlier than {fmt(now - SKEW_SECONDS)} "
            f"({fmt(now)} - 15 min.)"
        )
    return (
        f"Signature not yet current: {timestamp} is still later than "
        f"{fmt(now + SKEW_SECONDS)} ({fmt(now)} + 15 min.)"
    )


# ------------------------------------------------------------------ botocore, recomputing
@lru_cache(maxsize=512)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key (kDate -> kRegion -> kService -> kSigning): one per day and scope."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


class _SigV4Recompute(SigV4Auth):
    """botocore's signer, told which headers were signed and what the payload's hash is."""

    def __init__(
        self, key: AccessKey, signed: _SigV4, received: dict[str, str], payload_hash: str
    ) -> None:
        super().__init__(
            Credentials(key.access_key_id, key.secret_access_key), signed.service, signed.region
        )
        self._signed = signed
        self._received = received
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: AWSRequest) -> _SignedHeaders:
        received = self._received
        return _SignedHeaders(
            (name, received[name]) for name in self._signed.signed_headers if name in received
        )

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        signed = self._signed
        key = _signing_key(self.credentials.secret_key, signed.date, signed.region, signed.service)
        return hmac.digest(key, string_to_sign.encode(), "sha256").hex()  # C, one call


class _SignedHeaders(dict[str, str]):
    """The signed headers, lower-case, as botocore's canonicalization reads them (its
    ``HTTPHeaders`` is an ``email.message.Message``: several times slower to fill and read)."""

    def get_all(self, name: str) -> list[str]:
        return [self[name]]


class _S3SigV4Recompute(_SigV4Recompute, S3SigV4Auth):
    """S3 signs the path as sent (no second encoding) and may name its payload's hash."""


def _recompute(request: _Received, signed: _SigV4, key: AccessKey, *, s3: bool) -> str:
    presigned = signed.expires is not None
    if s3 and presigned:
        payload_hash = UNSIGNED_PAYLOAD
    else:
        payload_hash = hashlib.sha256(request.body).hexdigest()
    signer = (_S3SigV4Recompute if s3 else _SigV4Recompute)(
        key, signed, request.headers, payload_hash
    )
    headers = {}
    if s3 and not presigned and "x-amz-content-sha256" in request.headers:
        headers["X-Amz-Content-SHA256"] = request.headers["x-amz-content-sha256"]
    params = [pair for pair in request.pairs if not (presigned and pair[0] == "X-Amz-Signature")]
    aws_request = AWSRequest(request.method, f"http://signed{request.path}", headers, params=params)
    aws_request.context["timestamp"] = signed.timestamp
    canonical = signer.canonical_request(aws_request)
    return str(signer.signature(signer.string_to_sign(aws_request, canonical), aws_request))


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, decoded once; botocore encodes them as SigV4 says."""
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


class _SigV2Recompute(HmacV1Auth):
    """botocore's S3 signature version 2, with the request's date (or presigned expiry)."""

    def __init__(self, key: AccessKey, date: str) -> None:
        super().__init__(Credentials(key.access_key_id, key.secret_access_key))
        self._date = date

    def _get_date(self) -> str:
        return self._date


def _recompute_sigv2(request: _Received, key: AccessKey, date: str, presigned: bool) -> str:
    headers = HTTPHeaders()
    for name, value in request.headers.items():
        headers[name] = value
    if presigned:  # the signed x-amz-* headers travel in the query string
        for name, value in request.args.items():
            if name.lower().startswith("x-amz-"):
                headers[name] = value
    query = request.query
    split = urlsplit(f"http://signed{request.path}" + (f"?{query}" if query else ""))
    # A bucket's own resource is "/bucket/" (the S3 docs' CanonicalizedResource, botocore's
    # auth_path), whether or not the request's path ends in "/".
    bucket_only = request.path.count("/") == 1 and len(request.path) > 1
    auth_path = request.path + "/" if bucket_only else None
    signer = _SigV2Recompute(key, date)
    return str(signer.get_signature(request.method, split, headers, auth_path=auth_path))


# ------------------------------------------------------------------ S3 payloads
def _s3_payload(request: _Received, signed: _SigV4, key: AccessKey) -> bytes | None:
    """Check the body against ``x-amz-content-sha256``; an aws-chunked body decoded (None when
    the body is the object as sent)."""
    body = request.body
    declared = request.headers.get("x-amz-content-sha256", "")
    if declared in ("", UNSIGNED_PAYLOAD):
        return None
    if declared == STREAMING_SIGNED:
        return _decoded(request, _chunks(body, signed, key))
    if declared == STREAMING_UNSIGNED_TRAILER:
        return _decoded(request, _chunks(body, None, key))
    if declared.startswith("STREAMING-"):
        raise AuthFailure(NOT_EMULATED, f"x-amz-content-sha256: {declared}")
    if not hmac.compare_digest(declared, hashlib.sha256(body).hexdigest()):
        raise AuthFailure(CONTENT_SHA256)
    return None


def _decoded(request: _Received, chunks: Iterator[bytes]) -> bytes:
    body = b"".join(chunks)
    declared = request.headers.get("x-amz-decoded-content-length")
    if declared is not None and declared != str(len(body)):
        raise AuthFailure(
            MALFORMED,
            f"x-amz-decoded-content-length {declared} but the chunks hold {len(body)} bytes",
        )
    return body


def _chunks(body: bytes, signed: _SigV4 | None, key: AccessKey) -> Iterator[bytes]:
    """The data of each ``aws-chunked`` chunk; with ``signed``, each chunk's signature checked
    against the chain that starts at the seed (the header's) signature, as
    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html computes it."""
    previous = signed.signature if signed else ""
    position = 0
    while True:
        end = body.find(b"\r\n", position)
        if end < 0:
            raise AuthFailure(MALFORMED, "an aws-chunked body ended inside a chunk header")
        size_text, _, extension = body[position:end].decode("latin-1").partition(";")
        size = int(size_text.strip() or "0", 16)
        data = body[end + 2 : end + 2 + size]
        if signed is not None:
            previous = _check_chunk(signed, key, previous, extension, data)
        if size == 0:
            return
        yield data
        position = end + 2 + size + 2


def _check_chunk(signed: _SigV4, key: AccessKey, previous: str, extension: str, data: bytes) -> str:
    offered = extension.partition("chunk-signature=")[2].strip()
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signed.timestamp,
            signed.scope,
            previous,
            EMPTY_SHA256_HASH,
            hashlib.sha256(data).hexdigest(),
        ]
    )
    signing_key = _signing_key(key.secret_access_key, signed.date, signed.region, signed.service)
    expected = hmac.digest(signing_key, string_to_sign.encode(), "sha256").hex()
    if not hmac.compare_digest(expected, offered):
        raise AuthFailure(MISMATCH, "a chunk's signature does not match")
    return expected


# ------------------------------------------------------------------ AWS's answers
# How each protocol family refuses: the code and HTTP status for each kind of failure.
# - S3 (rest-xml): https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
#   (InvalidAccessKeyId 403, SignatureDoesNotMatch 403, RequestTimeTooSkewed 403,
#   AuthorizationHeaderMalformed 400, AccessDenied 403 for an expired presigned URL,
#   XAmzContentSHA256Mismatch 400, InvalidToken 400).
# - Query protocol (SNS; CloudWatch, which is awsQueryCompatible and keeps these codes on JSON
#   and CBOR): https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html (InvalidClientTokenId
#   403, IncompleteSignature 400; a bad or expired signature is SignatureDoesNotMatch 403, as
#   https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html says).
# - JSON protocols (Step Functions, SageMaker, EventBridge: awsJson, 400; Lambda and
#   sagemaker-runtime: restJson, 403): https://docs.aws.amazon.com/lambda/latest/api/
#   CommonErrors.html lists UnrecognizedClientException (403) and IncompleteSignature; these
#   services answer a bad or expired signature InvalidSignatureException (the code the AWS SDKs
#   map, e.g. "Signature expired: ... (... - 15 min.)", status 400 for awsJson).
_S3_CODES = {
    MALFORMED: ("AuthorizationHeaderMalformed", 400),
    TOKEN: ("InvalidToken", 400),
    UNKNOWN_KEY: ("InvalidAccessKeyId", 403),
    WRONG_REGION: ("AuthorizationHeaderMalformed", 400),
    SKEWED: ("RequestTimeTooSkewed", 403),
    EXPIRED: ("AccessDenied", 403),
    MISMATCH: ("SignatureDoesNotMatch", 403),
    CONTENT_SHA256: ("XAmzContentSHA256Mismatch", 400),
    NOT_EMULATED: ("NotImplemented", 501),
}
_QUERY_CODES = {
    MALFORMED: ("IncompleteSignature", 400),
    TOKEN: ("InvalidClientTokenId", 403),
    UNKNOWN_KEY: ("InvalidClientTokenId", 403),
    WRONG_REGION: ("SignatureDoesNotMatch", 403),
    SKEWED: ("SignatureDoesNotMatch", 403),
    EXPIRED: ("SignatureDoesNotMatch", 403),
    MISMATCH: ("SignatureDoesNotMatch", 403),
    NOT_EMULATED: ("NotImplemented", 501),
}
_JSON_CODES = {
    MALFORMED: ("IncompleteSignatureException", 400),
    TOKEN: ("UnrecognizedClientException", 400),
    UNKNOWN_KEY: ("UnrecognizedClientException", 400),
    WRONG_REGION: ("InvalidSignatureException", 400),
    SKEWED: ("InvalidSignatureException", 400),
    EXPIRED: ("InvalidSignatureException", 400),
    MISMATCH: ("InvalidSignatureException", 400),
    NOT_EMULATED: ("NotImplemented", 501),
}
_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)
_MESSAGES = {
    TOKEN: "The security token included in the request is invalid.",
    UNKNOWN_KEY: "The security token included in the request is invalid.",
    WRONG_REGION: "Credential should be scoped to a valid region. ",
    MISMATCH: _SIGNATURE_MESSAGE,
}
_S3_MESSAGES = {
    TOKEN: "The provided token is malformed or otherwise invalid.",
    UNKNOWN_KEY: "The AWS Access Key Id you provided does not exist in our records.",
    SKEWED: "The difference between the request time and the current time is too large.",
    MISMATCH: "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
    CONTENT_SHA256: "The provided 'x-amz-content-sha256' header does not match what was computed.",
}


def aws_error(failure: AuthFailure, model: Any, protocol: str) -> AwsError:
    """The error the service named by its botocore ``model`` answers ``failure`` with."""
    s3 = model.service_name == "s3"
    if s3:
        codes = _S3_CODES
    elif protocol == "query" or model.metadata.get("awsQueryCompatible") is not None:
        codes = _QUERY_CODES
    else:
        codes = _JSON_CODES
    code, status = codes[failure.kind]
    if protocol == "rest-json" and status == 400:
        status = 403  # restJson services (Lambda) refuse with 403
    return AwsError(code, _message(failure, s3), status)


def _message(failure: AuthFailure, s3: bool) -> str:
    fixed = _S3_MESSAGES if s3 else _MESSAGES
    if failure.kind == WRONG_REGION and s3:
        return (
            f"The authorization header is malformed; the region '{failure.detail}' is wrong; "
            f"expecting '{settings.LOCAL_REGION}'"
        )
    if failure.kind == NOT_EMULATED:
        return f"sfn-mlops local mode does not verify {failure.detail} uploads"
    if failure.kind in fixed and not (failure.kind == MISMATCH and failure.detail):
        return fixed[failure.kind]
    return failure.detail or fixed[MISMATCH]
