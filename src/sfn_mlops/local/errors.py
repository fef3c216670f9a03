"""Errors the local services raise; the router turns them into AWS error responses."""

from __future__ import annotations


class AwsError(Exception):
    """An error in AWS's shape: botocore raises it to the caller as a ``ClientError``."""

    def __init__(self, code: str, message: str, status: int = 400, **members: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.members = members  # the error shape's other members, e.g. ModelError's


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def not_found(code: str, message: str) -> AwsError:
    return AwsError(code, message, 404 if code.startswith("NoSuch") else 400)
