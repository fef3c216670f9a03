"""Signature verification on its own, against the AWS documentation's own test vectors.

No service and no network: requests are built as the server builds them, the clock injected.
The vectors are the worked examples of https://docs.aws.amazon.com/AmazonS3/latest/API/
sig-v4-header-based-auth.html (GET Object), .../sigv4-query-string-auth.html (presigned URL),
.../sigv4-streaming.html (a chunked PUT Object) and https://docs.aws.amazon.com/IAM/latest/
UserGuide/create-signed-request.html (IAM ListUsers, a non-S3 service).
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import botocore.session
import pytest
from localstack.http import Request

from sfn_mlops.local.credentials import AccessKey, Principal
from sfn_mlops.local.signatures import (
    CONTENT_SHA256,
    EXPIRED,
    MALFORMED,
    MISMATCH,
    SKEWED,
    TOKEN,
    UNKNOWN_KEY,
    WRONG_REGION,
    AuthFailure,
    Verifier,
    aws_error,
)

S3_KEY = AccessKey(
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    Principal("arn:aws:iam::123456789012:user/example"),
)
IAM_KEY = AccessKey(
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    Principal("arn:aws:iam::123456789012:user/iam-example"),
)
GET_OBJECT_SIGNATURE = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
CHUNKED_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class Keys:
    """The two example keys, as a workspace's KeyStore answers ``lookup``."""

    def lookup(self, access_key_id: str) -> AccessKey | None:
        return {key.access_key_id: key for key in (S3_KEY, IAM_KEY)}.get(access_key_id)


def at(stamp: str, plus: float = 0.0) -> Verifier:
    moment = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) + plus
    return Verifier(Keys(), "us-east-1", clock=lambda: moment)  # type: ignore[arg-type]


def request(
    method: str, path: str, headers: dict[str, str], body: bytes = b"", query: str = ""
) -> Request:
    return Request(
        method=method, path=path, headers=headers, body=body, query_string=query, raw_path=path
    )


def get_object(**changes: str) -> Request:
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        f"Signature={GET_OBJECT_SIGNATURE}",
    }
    headers.update(changes)
    return request("GET", "/test.txt", headers)


def chunked_put(tamper: bool = False) -> Request:
    body = b""
    for size, signature in CHUNK_SIGNATURES:
        data = (b"b" if tamper and size == 1024 else b"a") * size
        body += f"{size:x};chunk-signature={signature}\r\n".encode() + data + b"\r\n"
    headers = {
        "Host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        "aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
        f"x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature={CHUNKED_SEED}",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "Content-Length": str(len(body)),
    }
    return request("PUT", "/examplebucket/chunkObject.txt", headers, body)


def iam_list_users(
    signature: str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    body: bytes = b"",
) -> Request:
    headers = {
        "Host": "iam.amazonaws.com",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
        f"aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
    }
    return request("GET", "/", headers, body, "Action=ListUsers&Version=2010-05-08")


def failure(verifier: Verifier, req: Request, signing_name: str = "s3") -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        verifier.verify(req, signing_name)
    return caught.value


# the documentation's examples verify ----------------------------------------------------------
def test_the_s3_get_object_example_verifies_as_its_key() -> None:
    verified = at("20130524T000000Z").verify(get_object(), "s3")
    assert (verified.key, verified.body) == (S3_KEY, None)


def test_the_presigned_url_example_verifies_until_it_expires() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    presigned = request("GET", "/test.txt", {"Host": "examplebucket.s3.amazonaws.com"}, b"", query)
    assert at("20130524T000000Z", 86399).verify(presigned, "s3").key == S3_KEY
    assert failure(at("20130524T000000Z", 86401), presigned).kind == EXPIRED


def test_the_chunked_upload_example_verifies_every_chunk_and_is_decoded() -> None:
    verified = at("20130524T000000Z").verify(chunked_put(), "s3")
    assert verified.key == S3_KEY
    assert verified.body == b"a" * 66560


def test_a_chunk_changed_after_signing_is_refused() -> None:
    refused = failure(at("20130524T000000Z"), chunked_put(tamper=True))
    assert (refused.kind, refused.detail) == (MISMATCH, "a chunk's signature does not match")


def test_the_iam_example_verifies_a_non_s3_service() -> None:
    assert at("20150830T123600Z").verify(iam_list_users(), "iam").key == IAM_KEY


# what is refused, and why ------------------------------------------------------------------
def test_a_different_signature_does_not_match() -> None:
    assert failure(at("20150830T123600Z"), iam_list_users("0" * 64), "iam").kind == MISMATCH


def test_a_body_other_than_the_signed_one_does_not_match() -> None:
    assert failure(at("20150830T123600Z"), iam_list_users(body=b"x"), "iam").kind == MISMATCH


def test_an_s3_body_other_than_its_declared_hash_is_refused() -> None:
    changed = get_object()
    refused = failure(
        at("20130524T000000Z"), request("GET", "/test.txt", dict(changed.headers), b"not empty")
    )
    assert refused.kind == CONTENT_SHA256


def test_an_unknown_key_is_refused_before_the_signature_is_computed() -> None:
    auth = get_object().headers["Authorization"].replace("AKIAIOSFODNN7EXAMPLE", "AKIAUNKNOWN")
    assert failure(at("20130524T000000Z"), get_object(Authorization=auth)).kind == UNKNOWN_KEY


@pytest.mark.parametrize(
    ("offset", "words"), [(-901, "Signature expired"), (901, "Signature not yet current")]
)
def test_a_time_stamp_more_than_15_minutes_away_is_refused(offset: float, words: str) -> None:
    refused = failure(at("20130524T000000Z", -offset), get_object())
    assert refused.kind == SKEWED and refused.detail.startswith(words)
    assert at("20130524T000000Z", -offset * 899 / 901).verify(get_object(), "s3").key == S3_KEY


def test_a_session_token_the_service_did_not_issue_is_refused() -> None:
    refused = failure(at("20130524T000000Z"), get_object(**{"X-Amz-Security-Token": "x"}))
    assert refused.kind == TOKEN


def test_a_scope_for_another_region_is_refused() -> None:
    auth = get_object().headers["Authorization"].replace("/us-east-1/", "/eu-west-1/")
    refused = failure(at("20130524T000000Z"), get_object(Authorization=auth))
    assert (refused.kind, refused.detail) == (WRONG_REGION, "eu-west-1")


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA512 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/s3/aws4_request, "
        "SignedHeaders=host, Signature=00",
    ],
)
def test_a_malformed_authorization_header_is_refused(authorization: str) -> None:
    assert (
        failure(at("20130524T000000Z"), get_object(Authorization=authorization)).kind == MALFORMED
    )


# AWS's answers, per protocol family --------------------------------------------------------------
def model(name: str) -> Any:
    return botocore.session.get_session().get_service_model(name)


@pytest.mark.parametrize(
    ("service", "protocol", "kind", "code", "status"),
    [
        ("s3", "rest-xml", MISMATCH, "SignatureDoesNotMatch", 403),
        ("s3", "rest-xml", UNKNOWN_KEY, "InvalidAccessKeyId", 403),
        ("s3", "rest-xml", SKEWED, "RequestTimeTooSkewed", 403),
        ("s3", "rest-xml", EXPIRED, "AccessDenied", 403),
        ("s3", "rest-xml", CONTENT_SHA256, "XAmzContentSHA256Mismatch", 400),
        ("stepfunctions", "json", MISMATCH, "InvalidSignatureException", 400),
        ("stepfunctions", "json", UNKNOWN_KEY, "UnrecognizedClientException", 400),
        ("sagemaker", "json", SKEWED, "InvalidSignatureException", 400),
        ("lambda", "rest-json", UNKNOWN_KEY, "UnrecognizedClientException", 403),
        ("lambda", "rest-json", MISMATCH, "InvalidSignatureException", 403),
        ("sns", "query", MISMATCH, "SignatureDoesNotMatch", 403),
        ("sns", "query", UNKNOWN_KEY, "InvalidClientTokenId", 403),
        ("cloudwatch", "smithy-rpc-v2-cbor", UNKNOWN_KEY, "InvalidClientTokenId", 403),
    ],
)
def test_each_protocol_family_answers_with_its_own_code(
    service: str, protocol: str, kind: str, code: str, status: int
) -> None:
    error = aws_error(AuthFailure(kind, "detail"), model(service), protocol)
    assert (error.code, error.status) == (code, status)
