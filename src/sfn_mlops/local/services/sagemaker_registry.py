"""The SageMaker Model Registry: model package groups and their versioned model packages.

A mixin of ``sfn_mlops.local.services.sagemaker.SageMaker``. Groups and versions are metadata
records (kinds ``sagemaker-model-package-group``, ``sagemaker-model-package``; a version is
keyed ``group/version``). Versions are numbered 1, 2, ... per group and a number is never
given twice, even after a delete. Registration is immediate (``ModelPackageStatus``
``Completed``: there is no validation job locally). A version's creation and every change of
its approval status emit ``SageMaker Model Package State Change`` (source ``aws.sagemaker``)
to the local EventBridge, the detail being the version's description as AWS documents it.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.services.sagemaker_hosting import in_window, page
from sfn_mlops.local.shapes import timestamp

log = logging.getLogger("sfn_mlops.local.services.sagemaker_registry")

KIND_GROUP = "sagemaker-model-package-group"
KIND_PACKAGE = "sagemaker-model-package"
STATE_CHANGE = "SageMaker Model Package State Change"
PENDING = "PendingManualApproval"
#: ``name``, ``name/3``, ``arn:...:model-package/name/3`` (and the group ARN form).
_REFERENCE = re.compile(
    r"^(?:arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*/)?"
    r"(?P<name>[a-zA-Z0-9](?:[a-zA-Z0-9-]){0,62})(?:/(?P<version>[0-9]{1,9}))?$"
)
_PACKAGE_ECHO = (
    "ModelPackageDescription",
    "InferenceSpecification",
    "SourceAlgorithmSpecification",
    "ValidationSpecification",
    "MetadataProperties",
    "ModelMetrics",
    "CustomerMetadataProperties",
    "DriftCheckBaselines",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
    "SourceUri",
    "ModelCard",
    "ModelLifeCycle",
    "ModelPackageRegistrationType",
)
_PUBLIC_EXCLUDED = ("ClientToken", "Request", "Key")


def _reference(value: str) -> tuple[str, int | None]:
    match = _REFERENCE.match(value)
    if match is None:
        raise validation(f"{value!r} is not a model package name or ARN")
    version = match.group("version")
    return match.group("name"), int(version) if version else None


def _iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key not in _PUBLIC_EXCLUDED}


class RegistryMixin:
    """CreateModelPackageGroup ... DeleteModelPackage."""

    cloud: Any
    #: Where state-change events go; None: the local EventBridge (tests give a recorder).
    event_emitter: Callable[[str, str, dict[str, Any], list[str]], None] | None = None

    # groups ----------------------------------------------------------------------------------
    def _group_arn(self, name: str) -> str:
        return str(self.cloud.arn("sagemaker", f"model-package-group/{name.lower()}"))

    def _package_arn(self, name: str, version: int | None) -> str:
        suffix = f"{name.lower()}/{version}" if version is not None else name.lower()
        return str(self.cloud.arn("sagemaker", f"model-package/{suffix}"))

    def _group(self, reference: str) -> dict[str, Any]:
        name, _ = _reference(reference)
        doc = self.cloud.metadata.get(KIND_GROUP, name)
        if doc is None:
            raise validation(f"ModelPackageGroup {self._group_arn(name)} does not exist.")
        return doc

    def create_model_package_group(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        name = params["ModelPackageGroupName"]
        _check_name(name, "modelPackageGroupName")
        arn = self._group_arn(name)
        doc = {
            "ModelPackageGroupName": name,
            "ModelPackageGroupArn": arn,
            "ModelPackageGroupDescription": params.get("ModelPackageGroupDescription"),
            "CreationTime": time.time(),
            "CreatedBy": {},
            "ModelPackageGroupStatus": "Completed",
            "LatestVersion": 0,
            "Tags": params.get("Tags", []),
        }
        try:
            self.cloud.metadata.create(
                KIND_GROUP, name, {k: v for k, v in doc.items() if v is not None}
            )
        except AlreadyExists as err:
            raise validation(f"Model Package Group already exists: {arn}") from err
        return {"ModelPackageGroupArn": arn}

    def describe_model_package_group(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._group(params["ModelPackageGroupName"])
        out = {k: v for k, v in doc.items() if k not in ("LatestVersion", "Tags")}
        return {**out, "CreationTime": timestamp(doc["CreationTime"])}

    def list_model_package_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        docs = [
            doc
            for doc in self.cloud.metadata.list(KIND_GROUP)
            if params.get("NameContains", "") in doc["ModelPackageGroupName"]
            and in_window(doc["CreationTime"], params)
        ]

        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            keys = ("ModelPackageGroupName", "ModelPackageGroupArn", "ModelPackageGroupDescription")
            out = {key: doc[key] for key in keys if key in doc}
            out.update(
                CreationTime=timestamp(doc["CreationTime"]),
                ModelPackageGroupStatus=doc["ModelPackageGroupStatus"],
            )
            return out

        return page(
            docs,
            params,
            "ModelPackageGroupSummaryList",
            summary,
            {
                "Name": lambda doc: doc["ModelPackageGroupName"],
                "CreationTime": lambda doc: doc["CreationTime"],
            },
            "Ascending",
        )

    def delete_model_package_group(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group(params["ModelPackageGroupName"])
        name = group["ModelPackageGroupName"]
        if self._versions(name):
            raise AwsError(
                "ConflictException",
                f"Model Package Group {group['ModelPackageGroupArn']} still holds model "
                "package versions; delete them (DeleteModelPackage) first.",
            )
        self.cloud.metadata.delete(KIND_GROUP, name)
        return {}

    # packages --------------------------------------------------------------------------------
    def _versions(self, group: str) -> list[dict[str, Any]]:
        return [
            doc
            for doc in self.cloud.metadata.list(KIND_PACKAGE)
            if doc.get("ModelPackageGroupName") == group
        ]

    def _package(self, reference: str) -> dict[str, Any]:
        name, version = _reference(reference)
        key = f"{name}/{version}" if version is not None else name
        doc = self.cloud.metadata.get(KIND_PACKAGE, key)
        if doc is None:
            raise validation(f"ModelPackage {self._package_arn(name, version)} does not exist.")
        return doc

    def create_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        group_ref, name = params.get("ModelPackageGroupName"), params.get("ModelPackageName")
        if group_ref and name:
            raise validation(
                "Both ModelPackageName and ModelPackageGroupName are provided in the input. "
                "Cannot determine which one to use."
            )
        if not group_ref and not name:
            raise validation("Missing ARN.")
        if not params.get("InferenceSpecification") and not params.get(
            "SourceAlgorithmSpecification"
        ):
            raise validation(
                "Either InferenceSpecification or SourceAlgorithmSpecification is required."
            )
        self._check_model_data(params)
        if group_ref:
            return self._create_version(group_ref, params)
        return self._create_unversioned(str(name), params)

    def _check_model_data(self, params: dict[str, Any]) -> None:
        containers = (params.get("InferenceSpecification") or {}).get("Containers", [])
        for container in containers:
            uri = container.get("ModelDataUrl")
            if uri is not None and not uri.startswith("s3://"):
                raise validation(f"ModelDataUrl {uri!r} must be an S3 URI: s3://bucket/key")

    def _new_package(self, params: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        doc = {key: copy.deepcopy(params[key]) for key in _PACKAGE_ECHO if key in params}
        doc.update(
            CreationTime=now,
            LastModifiedTime=now,
            ModelPackageStatus="Completed",
            ModelPackageStatusDetails={"ValidationStatuses": [], "ImageScanStatuses": []},
            CertifyForMarketplace=bool(params.get("CertifyForMarketplace", False)),
            CreatedBy={},
            ClientToken=params.get("ClientToken"),
            Request=_request_digest(params),
        )
        return doc

    def _create_version(self, group_ref: str, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Tags"):
            raise validation(
                "Tags cannot be given for a versioned model package: it uses the tags of its "
                "model package group."
            )
        group = self._group(group_ref)
        name = group["ModelPackageGroupName"]
        token = params.get("ClientToken")
        if token:
            for existing in self._versions(name):
                if existing.get("ClientToken") == token:
                    return self._same_request(existing, params)
        doc = self._new_package(params)
        doc["ModelApprovalStatus"] = params.get("ModelApprovalStatus", PENDING)
        while True:  # the group's counter: a version number is never given twice
            version = int(self.cloud.metadata.get(KIND_GROUP, name)["LatestVersion"]) + 1
            self.cloud.metadata.update(KIND_GROUP, name, LatestVersion=version)
            arn = self._package_arn(name, version)
            doc.update(
                ModelPackageName=name,
                ModelPackageGroupName=name,
                ModelPackageVersion=version,
                ModelPackageArn=arn,
                Key=f"{name}/{version}",
            )
            try:
                self.cloud.metadata.create(KIND_PACKAGE, doc["Key"], doc)
                break
            except AlreadyExists:
                continue
        self._emit_state_change(doc)
        return {"ModelPackageArn": arn}

    def _same_request(self, existing: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if existing.get("Request") != _request_digest(params):
            raise validation(
                f"ClientToken {params['ClientToken']!r} was already used with a different "
                f"request, for {existing['ModelPackageArn']}."
            )
        return {"ModelPackageArn": existing["ModelPackageArn"]}

    def _create_unversioned(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        _check_name(name, "modelPackageName")
        arn = self._package_arn(name, None)
        doc = self._new_package(params)
        doc.update(ModelPackageName=name, ModelPackageArn=arn, Key=name)
        try:
            self.cloud.metadata.create(KIND_PACKAGE, name, doc)
        except AlreadyExists as err:
            existing = self.cloud.metadata.get(KIND_PACKAGE, name) or {}
            if params.get("ClientToken") and existing.get("ClientToken") == params["ClientToken"]:
                return self._same_request(existing, params)
            raise AwsError("ConflictException", f"Model package {arn} already exists.") from err
        return {"ModelPackageArn": arn}

    def describe_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._package(params["ModelPackageName"])
        return {
            **_public(doc),
            "CreationTime": timestamp(doc["CreationTime"]),
            "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
        }

    def list_model_packages(self, params: dict[str, Any]) -> dict[str, Any]:
        group_ref = params.get("ModelPackageGroupName")
        group = _reference(group_ref)[0] if group_ref else None
        kind = params.get("ModelPackageType", "Versioned" if group else "Unversioned")
        docs = [
            doc
            for doc in self.cloud.metadata.list(KIND_PACKAGE)
            if _listed(doc, params, group, kind)
        ]
        return page(
            docs,
            params,
            "ModelPackageSummaryList",
            _package_summary,
            {
                "Name": lambda doc: (doc["ModelPackageName"], doc.get("ModelPackageVersion", 0)),
                "CreationTime": lambda doc: (
                    doc["CreationTime"],
                    doc.get("ModelPackageVersion", 0),
                ),
            },
            "Ascending",
        )

    def update_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._package(params["ModelPackageArn"])
        status = params.get("ModelApprovalStatus")
        if status is not None and doc.get("ModelPackageVersion") is None:
            raise validation("ModelApprovalStatus applies to versioned model packages only.")
        changes = _changes(doc, params)
        changes["LastModifiedTime"] = time.time()
        updated = self.cloud.metadata.update(KIND_PACKAGE, doc["Key"], **changes)
        if status is not None and status != doc.get("ModelApprovalStatus"):
            self._emit_state_change(updated)
        return {"ModelPackageArn": doc["ModelPackageArn"]}

    def delete_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._package(params["ModelPackageName"])
        self.cloud.metadata.delete(KIND_PACKAGE, doc["Key"])
        return {}

    # events ----------------------------------------------------------------------------------
    def _emit_state_change(self, doc: dict[str, Any]) -> None:
        """``SageMaker Model Package State Change``; skipped only when EventBridge is absent."""
        detail = _event_detail(doc)
        emit = self.event_emitter
        if emit is None:
            try:
                emit = self.cloud.service("eventbridge").emit
            except (ImportError, AttributeError) as err:
                log.info("no local EventBridge (%s): %s not emitted", err, STATE_CHANGE)
                return
            except AwsError as err:
                if err.code != "NotImplemented":
                    raise
                log.info("no local EventBridge: %s not emitted", STATE_CHANGE)
                return
        try:
            emit("aws.sagemaker", STATE_CHANGE, detail, [doc["ModelPackageArn"]])
        except Exception:  # noqa: BLE001 - the change is made; a lost event must not undo it
            log.exception("emitting %s for %s failed", STATE_CHANGE, doc["ModelPackageArn"])


def _changes(doc: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The members of a model package that an UpdateModelPackage request changes."""
    changes: dict[str, Any] = {}
    for member in (
        "ModelApprovalStatus",
        "ApprovalDescription",
        "InferenceSpecification",
        "SourceUri",
        "ModelCard",
        "ModelLifeCycle",
    ):
        if member in params:
            changes[member] = copy.deepcopy(params[member])
    if params.get("CustomerMetadataProperties") or params.get("CustomerMetadataPropertiesToRemove"):
        metadata = dict(doc.get("CustomerMetadataProperties") or {})
        metadata.update(params.get("CustomerMetadataProperties") or {})
        for key in params.get("CustomerMetadataPropertiesToRemove") or []:
            metadata.pop(key, None)
        changes["CustomerMetadataProperties"] = metadata
    if params.get("AdditionalInferenceSpecificationsToAdd"):
        added = list(doc.get("AdditionalInferenceSpecifications") or [])
        added += params["AdditionalInferenceSpecificationsToAdd"]
        if len(added) > 15:
            raise validation(
                "A model package can have at most 15 additional inference specifications."
            )
        changes["AdditionalInferenceSpecifications"] = added
    return changes


def _request_digest(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key != "ClientToken"}


def _listed(doc: dict[str, Any], params: dict[str, Any], group: str | None, kind: str) -> bool:
    versioned = doc.get("ModelPackageVersion") is not None
    if kind == "Versioned" and not versioned or kind == "Unversioned" and versioned:
        return False
    if group is not None and doc.get("ModelPackageGroupName") != group:
        return False
    status = params.get("ModelApprovalStatus")
    if status is not None and doc.get("ModelApprovalStatus") != status:
        return False
    if params.get("NameContains", "") not in doc["ModelPackageName"]:
        return False
    return in_window(doc["CreationTime"], params)


def _package_summary(doc: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "ModelPackageGroupName",
        "ModelPackageVersion",
        "ModelPackageArn",
        "ModelPackageDescription",
        "ModelPackageStatus",
        "ModelApprovalStatus",
        "ModelLifeCycle",
        "ModelPackageRegistrationType",
    )
    out = {key: doc[key] for key in keys if key in doc}
    if doc.get("ModelPackageVersion") is None:  # versions are listed without a name, as in AWS
        out["ModelPackageName"] = doc["ModelPackageName"]
    out["CreationTime"] = timestamp(doc["CreationTime"])
    return out


def _event_detail(doc: dict[str, Any]) -> dict[str, Any]:
    """The model package's description as the event's detail carries it (times as ISO text)."""
    detail = _public(doc)
    detail.pop("ModelPackageName", None)
    detail.pop("CreatedBy", None)
    detail["CreationTime"] = _iso(doc["CreationTime"])
    detail["LastModifiedTime"] = _iso(doc["LastModifiedTime"])
    return detail
