"""SageMaker real-time hosting: endpoint configs and endpoints, served on this machine.

A mixin of ``sfn_mlops.local.services.sagemaker.SageMaker``. Endpoint configs and endpoints are
metadata records (kinds ``sagemaker-endpoint-config``, ``sagemaker-endpoint``); an endpoint's
record also keeps what it serves (the variants resolved from the config and its models), so it
comes back after the service restarts even when the config or a model was deleted meanwhile.

Create, update and weight changes return at once, as in SageMaker, and run on a thread of the
service: ``Creating`` -> ``InService`` (or ``Failed`` with a FailureReason when a model cannot
load), ``Updating`` -> ``InService``. UpdateEndpoint carries out its DeploymentConfig through
``sfn_mlops.local.deployments``; a deployment that fails or is rolled back leaves the old
config serving, the endpoint ``InService`` on it and the reason in ``FailureReason``. The data
plane is ``cloud.endpoint_hosts`` (``sfn_mlops.local.endpoints``).
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sfn_mlops.local import deployments
from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.images import runtime_for
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.shapes import timestamp

log = logging.getLogger("sfn_mlops.local.services.sagemaker_hosting")

KIND_ENDPOINT_CONFIG = "sagemaker-endpoint-config"
KIND_ENDPOINT = "sagemaker-endpoint"
#: Statuses of an endpoint that serves, or is about to: the service must not stop for idleness.
ACTIVE = ("Creating", "Updating", "SystemUpdating", "RollingBack", "InService")
_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
_CONFIG_ECHO = (
    "ProductionVariants",
    "DataCaptureConfig",
    "KmsKeyId",
    "ExecutionRoleArn",
    "VpcConfig",
    "EnableNetworkIsolation",
    "MetricsConfig",
)
_UNSUPPORTED_CONFIG = (
    "AsyncInferenceConfig",
    "ShadowProductionVariants",
    "ExplainerConfig",
    "CrossRegionTrafficConfig",
)
_JOIN_SECONDS = 30.0


def page(
    docs: list[dict[str, Any]],
    params: dict[str, Any],
    key: str,
    summary: Callable[[dict[str, Any]], dict[str, Any]],
    sort_keys: dict[str, Callable[[dict[str, Any]], Any]],
    default_order: str,
) -> dict[str, Any]:
    """Sort (``SortBy``/``SortOrder``), then one page (``MaxResults``/``NextToken``) of a List."""
    sort_key = sort_keys.get(params.get("SortBy", "CreationTime"), sort_keys["CreationTime"])
    docs = sorted(
        docs, key=sort_key, reverse=params.get("SortOrder", default_order) == "Descending"
    )
    start = int(params.get("NextToken") or 0)
    size = int(params.get("MaxResults", 10))
    result: dict[str, Any] = {key: [summary(doc) for doc in docs[start : start + size]]}
    if start + size < len(docs):
        result["NextToken"] = str(start + size)
    return result


def epoch(value: Any) -> float:
    from sfn_mlops.local.services.sagemaker import _epoch

    return _epoch(value)


def in_window(created: float, params: dict[str, Any], prefix: str = "CreationTime") -> bool:
    after = params.get(f"{prefix}After")
    before = params.get(f"{prefix}Before")
    if after is not None and created < epoch(after):
        return False
    return not (before is not None and created >= epoch(before))


def _data_capture_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    enabled = bool(config.get("EnableCapture", True))
    summary = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": config["InitialSamplingPercentage"],
        "DestinationS3Uri": config["DestinationS3Uri"],
    }
    if config.get("KmsKeyId"):
        summary["KmsKeyId"] = config["KmsKeyId"]
    return summary


def _check_data_capture(config: dict[str, Any]) -> None:
    uri = config["DestinationS3Uri"]
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise validation(f"DataCaptureConfig.DestinationS3Uri {uri!r} must be an S3 URI")
    modes = [option["CaptureMode"] for option in config["CaptureOptions"]]
    if len(set(modes)) != len(modes):
        raise validation(f"DataCaptureConfig.CaptureOptions has duplicate CaptureMode: {modes}")


class HostingMixin:
    """CreateEndpointConfig ... DeleteEndpoint, and the endpoints' lifecycle threads."""

    cloud: Any
    _model: Callable[[str], dict[str, Any]]

    # state of this process -------------------------------------------------------------------
    def _hosting(self) -> dict[str, Any]:
        state = self.__dict__.get("_hosting_state")
        if state is None:
            state = {"lock": threading.Lock(), "workers": {}}
            self.__dict__["_hosting_state"] = state
        return state

    def endpoint_host(self) -> Any:
        """The data plane (``cloud.endpoint_hosts``); tests give the cloud a recording one."""
        return self.cloud.endpoint_hosts

    def _config_arn(self, name: str) -> str:
        return str(self.cloud.arn("sagemaker", f"endpoint-config/{name.lower()}"))

    def _endpoint_arn(self, name: str) -> str:
        return str(self.cloud.arn("sagemaker", f"endpoint/{name.lower()}"))

    def _endpoint_config(self, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(KIND_ENDPOINT_CONFIG, name)
        if doc is None:
            raise validation(f'Could not find endpoint configuration "{self._config_arn(name)}".')
        return doc

    def _endpoint(self, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(KIND_ENDPOINT, name)
        if doc is None:
            raise validation(f'Could not find endpoint "{self._endpoint_arn(name)}".')
        return doc

    # endpoint configs ------------------------------------------------------------------------
    def create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name, _unsupported

        name = params["EndpointConfigName"]
        _check_name(name, "endpointConfigName")
        for member in _UNSUPPORTED_CONFIG:
            if params.get(member):
                raise _unsupported(member)
        variants = [self._check_variant(variant) for variant in params["ProductionVariants"]]
        names = [variant["VariantName"] for variant in variants]
        if len(set(names)) != len(names):
            raise validation(f"The variant names of an endpoint config must be unique: {names}")
        if params.get("DataCaptureConfig"):
            _check_data_capture(params["DataCaptureConfig"])
        arn = self._config_arn(name)
        doc = {key: copy.deepcopy(params[key]) for key in _CONFIG_ECHO if key in params}
        doc.update(
            EndpointConfigName=name,
            EndpointConfigArn=arn,
            ProductionVariants=variants,
            CreationTime=time.time(),
        )
        doc.setdefault("EnableNetworkIsolation", False)
        try:
            self.cloud.metadata.create(KIND_ENDPOINT_CONFIG, name, doc)
        except AlreadyExists as err:
            raise validation(
                f'Cannot create already existing endpoint configuration "{arn}".'
            ) from err
        return {"EndpointConfigArn": arn}

    def _check_variant(self, variant: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _unsupported

        name = variant["VariantName"]
        if not variant.get("ModelName"):
            raise _unsupported(
                f"ProductionVariant {name!r} without ModelName (inference components)"
            )
        if variant.get("ServerlessConfig") is None:
            if not variant.get("InstanceType") and not variant.get("InstancePools"):
                raise validation(f"ProductionVariant {name!r}: InstanceType is required.")
            if variant.get("InitialInstanceCount") is None:
                raise validation(f"ProductionVariant {name!r}: InitialInstanceCount is required.")
        self._container(variant["ModelName"])
        out = copy.deepcopy(variant)
        out.setdefault("InitialVariantWeight", 1.0)
        return out

    def _container(self, model_name: str) -> dict[str, Any]:
        """The model's one container; its image must have a local runtime."""
        from sfn_mlops.local.services.sagemaker import _unsupported

        model = self._model(model_name)
        containers = model.get("Containers") or []
        if len(containers) > 1:
            raise _unsupported(f"Model {model_name!r} with {len(containers)} containers")
        container = model.get("PrimaryContainer") or containers[0]
        if not container.get("ModelDataUrl"):
            raise _unsupported(f"Model {model_name!r} without ModelDataUrl")
        runtime_for(container["Image"])
        return dict(container)

    def describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._endpoint_config(params["EndpointConfigName"])
        return {**doc, "CreationTime": timestamp(doc["CreationTime"])}

    def delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        self._endpoint_config(name)
        self.cloud.metadata.delete(KIND_ENDPOINT_CONFIG, name)
        return {}

    def list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        docs = [
            doc
            for doc in self.cloud.metadata.list(KIND_ENDPOINT_CONFIG)
            if params.get("NameContains", "") in doc["EndpointConfigName"]
            and in_window(doc["CreationTime"], params)
        ]
        return page(
            docs,
            params,
            "EndpointConfigs",
            lambda doc: {
                "EndpointConfigName": doc["EndpointConfigName"],
                "EndpointConfigArn": doc["EndpointConfigArn"],
                "CreationTime": timestamp(doc["CreationTime"]),
            },
            {
                "Name": lambda doc: doc["EndpointConfigName"],
                "CreationTime": lambda doc: doc["CreationTime"],
            },
            "Descending",
        )

    # what an endpoint serves -----------------------------------------------------------------
    def _serving(
        self,
        config: dict[str, Any],
        current: dict[str, Any] | None = None,
        retain: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A config resolved into what to serve; ``retain``: properties kept from ``current``."""
        kept = {v["VariantName"]: v for v in (current or {}).get("Variants", [])}
        variants = []
        for variant in config["ProductionVariants"]:
            container = self._container(variant["ModelName"])
            count = int(variant.get("InitialInstanceCount", 1))
            weight = float(variant.get("InitialVariantWeight", 1.0))
            old = kept.get(variant["VariantName"])
            if old is not None and "DesiredInstanceCount" in retain:
                count = old["InstanceCount"]
            if old is not None and "DesiredWeight" in retain:
                weight = old["Weight"]
            variants.append(
                {
                    "VariantName": variant["VariantName"],
                    "ModelName": variant["ModelName"],
                    "InstanceType": variant.get("InstanceType"),
                    "Image": container["Image"],
                    "ModelDataUrl": container["ModelDataUrl"],
                    "Environment": dict(container.get("Environment") or {}),
                    "InstanceCount": count,
                    "Weight": weight,
                }
            )
        capture = config.get("DataCaptureConfig")
        if current is not None and "DataCaptureConfig" in retain:
            capture = current.get("DataCaptureConfig")
        return {
            "ConfigName": config["EndpointConfigName"],
            "Variants": variants,
            "DataCaptureConfig": copy.deepcopy(capture),
        }

    @staticmethod
    def _fleet(serving: dict[str, Any], fleet_id: str) -> Any:
        from sfn_mlops.local.endpoints import Fleet, VariantSpec

        return Fleet(
            fleet_id=fleet_id,
            variants=tuple(
                VariantSpec(
                    name=v["VariantName"],
                    model_name=v["ModelName"],
                    image=v["Image"],
                    model_data_url=v["ModelDataUrl"],
                    environment=dict(v["Environment"]),
                    instance_count=int(v["InstanceCount"]),
                    weight=float(v["Weight"]),
                )
                for v in serving["Variants"]
            ),
        )

    @staticmethod
    def _capture(serving: dict[str, Any]) -> Any:
        config = serving.get("DataCaptureConfig")
        if not config or not config.get("EnableCapture", True):
            return None
        from sfn_mlops.local.endpoints import CaptureSpec

        modes = {option["CaptureMode"] for option in config["CaptureOptions"]}
        headers = config.get("CaptureContentTypeHeader") or {}
        return CaptureSpec(
            destination_s3_uri=config["DestinationS3Uri"],
            sampling_percentage=int(config["InitialSamplingPercentage"]),
            capture_input="Input" in modes,
            capture_output="Output" in modes,
            csv_content_types=tuple(headers.get("CsvContentTypes", ())),
            json_content_types=tuple(headers.get("JsonContentTypes", ())),
        )

    # endpoints -------------------------------------------------------------------------------
    def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        name = params["EndpointName"]
        _check_name(name, "endpointName")
        config = self._endpoint_config(params["EndpointConfigName"])
        target = self._serving(config)
        if params.get("DeploymentConfig"):
            deployments.plan(params["DeploymentConfig"], _capacity(target))
        arn = self._endpoint_arn(name)
        now = time.time()
        doc: dict[str, Any] = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config["EndpointConfigName"],
            "EndpointStatus": "Creating",
            "CreationTime": now,
            "LastModifiedTime": now,
            "Generation": 1,
            "Operation": {"Kind": "create", "Target": target, "StartTime": now},
        }
        if params.get("DeploymentConfig"):
            doc["LastDeploymentConfig"] = params["DeploymentConfig"]
        try:
            self.cloud.metadata.create(KIND_ENDPOINT, name, doc)
        except AlreadyExists as err:
            raise validation(f'Cannot create already existing endpoint "{arn}".') from err
        self._start(name)
        return {"EndpointArn": arn}

    def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        return _describe(self._endpoint(params["EndpointName"]))

    def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        docs = [
            doc
            for doc in self.cloud.metadata.list(KIND_ENDPOINT)
            if params.get("NameContains", "") in doc["EndpointName"]
            and params.get("StatusEquals", doc["EndpointStatus"]) == doc["EndpointStatus"]
            and in_window(doc["CreationTime"], params)
            and in_window(doc["LastModifiedTime"], params, "LastModifiedTime")
        ]
        return page(
            docs,
            params,
            "Endpoints",
            lambda doc: {
                "EndpointName": doc["EndpointName"],
                "EndpointArn": doc["EndpointArn"],
                "CreationTime": timestamp(doc["CreationTime"]),
                "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
                "EndpointStatus": doc["EndpointStatus"],
            },
            {
                "Name": lambda doc: doc["EndpointName"],
                "Status": lambda doc: doc["EndpointStatus"],
                "CreationTime": lambda doc: doc["CreationTime"],
            },
            "Descending",
        )

    def _updatable(self, name: str) -> dict[str, Any]:
        doc = self._endpoint(name)
        status = doc["EndpointStatus"]
        if status in _IN_PROGRESS:
            raise validation(f'Cannot update in-progress endpoint "{doc["EndpointArn"]}".')
        if status != "InService":
            raise validation(
                f'Cannot update endpoint "{doc["EndpointArn"]}" in status {status}: '
                "DeleteEndpoint is the only operation that can be performed on a failed endpoint."
            )
        return doc

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        doc = self._updatable(name)
        config = self._endpoint_config(params["EndpointConfigName"])
        retain: list[str] = []
        if params.get("RetainAllVariantProperties"):
            excluded = {
                item["VariantPropertyType"]
                for item in params.get("ExcludeRetainedVariantProperties", [])
            }
            retain = [
                prop
                for prop in ("DesiredWeight", "DesiredInstanceCount", "DataCaptureConfig")
                if prop not in excluded
            ]
        target = self._serving(config, doc.get("Serving"), retain)
        deployment_config = params.get("DeploymentConfig")
        if params.get("RetainDeploymentConfig") and deployment_config is None:
            deployment_config = doc.get("LastDeploymentConfig")
        deployments.plan(deployment_config, _capacity(target))  # reject a bad one now
        now = time.time()
        fields: dict[str, Any] = {
            "EndpointStatus": "Updating",
            "LastModifiedTime": now,
            "Generation": doc.get("Generation", 1) + 1,
            "Operation": {
                "Kind": "update",
                "Target": target,
                "DeploymentConfig": deployment_config,
                "StartTime": now,
            },
        }
        if deployment_config is not None:
            fields["LastDeploymentConfig"] = deployment_config
        self.cloud.metadata.update(KIND_ENDPOINT, name, **fields)
        self._start(name)
        return {"EndpointArn": doc["EndpointArn"]}

    def update_endpoint_weights_and_capacities(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        doc = self._updatable(name)
        target = copy.deepcopy(doc["Serving"])
        by_name = {variant["VariantName"]: variant for variant in target["Variants"]}
        missing = [
            item["VariantName"]
            for item in params["DesiredWeightsAndCapacities"]
            if item["VariantName"] not in by_name
        ]
        if missing:
            raise validation(
                f"The variant(s) {missing} are not present in the endpoint {doc['EndpointArn']}."
            )
        for item in params["DesiredWeightsAndCapacities"]:
            if "DesiredWeight" not in item and "DesiredInstanceCount" not in item:
                raise validation(
                    f"Variant {item['VariantName']!r}: give DesiredWeight or DesiredInstanceCount."
                )
            variant = by_name[item["VariantName"]]
            variant["Weight"] = float(item.get("DesiredWeight", variant["Weight"]))
            variant["InstanceCount"] = int(
                item.get("DesiredInstanceCount", variant["InstanceCount"])
            )
        if sum(variant["Weight"] for variant in target["Variants"]) <= 0:
            raise validation(
                "The sum of the variant weights of an endpoint must be greater than 0."
            )
        now = time.time()
        self.cloud.metadata.update(
            KIND_ENDPOINT,
            name,
            EndpointStatus="Updating",
            LastModifiedTime=now,
            Operation={"Kind": "weights", "Target": target, "StartTime": now},
        )
        self._start(name)
        return {"EndpointArn": doc["EndpointArn"]}

    def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        self._endpoint(name)
        self.cloud.metadata.update(KIND_ENDPOINT, name, EndpointStatus="Deleting")
        self._cancel(name)
        try:
            self.endpoint_host().stop(name)
        finally:
            self.cloud.metadata.delete(KIND_ENDPOINT, name)
        return {}

    # the service's side: recovery, idleness, shutdown ----------------------------------------
    def active_endpoints(self) -> list[str]:
        """Endpoints serving or about to: while there is one, the service is not idle."""
        return [
            doc["EndpointName"]
            for doc in self.cloud.metadata.list(KIND_ENDPOINT)
            if doc["EndpointStatus"] in ACTIVE
        ]

    def recover_endpoints(self) -> list[tuple[str, str]]:
        """After a service start: serve again what the records say; (name, what was done).

        ``InService`` endpoints are served again from their records; a creation that was in
        progress starts again; a deployment (or weight change) that was in progress is rolled
        back: the old config serves again, the endpoint is ``InService`` with a FailureReason.
        """
        done = []
        for doc in self.cloud.metadata.list(KIND_ENDPOINT):
            name, status = doc["EndpointName"], doc["EndpointStatus"]
            operation = doc.get("Operation")
            if status == "Deleting":
                self.cloud.metadata.delete(KIND_ENDPOINT, name)
                done.append((name, "deleted"))
            elif operation is not None and operation["Kind"] == "create":
                self._start(name)
                done.append((name, "creating again"))
            elif operation is not None and doc.get("Serving"):
                interrupted = operation["Kind"] != "recover" or operation.get("Interrupted", False)
                self.cloud.metadata.update(
                    KIND_ENDPOINT, name, Operation={"Kind": "recover", "Interrupted": interrupted}
                )
                self._start(name)
                done.append((name, "deployment rolled back"))
            elif status == "InService":
                self.cloud.metadata.update(KIND_ENDPOINT, name, Operation={"Kind": "recover"})
                self._start(name)
                done.append((name, "serving again"))
        return done

    def shutdown_endpoints(self) -> None:
        """The service stops: stop the lifecycle threads and the endpoints (records stay)."""
        workers = dict(self._hosting()["workers"])
        for name in workers:
            self._cancel(name)
        if "endpoint_hosts" in vars(self.cloud):
            self.endpoint_host().stop_all()

    # lifecycle threads -----------------------------------------------------------------------
    def _start(self, name: str) -> None:
        state = self._hosting()
        cancel = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(name, cancel), name=f"endpoint-{name}", daemon=True
        )
        with state["lock"]:
            state["workers"][name] = (thread, cancel)
        thread.start()

    def _cancel(self, name: str) -> None:
        state = self._hosting()
        with state["lock"]:
            worker = state["workers"].pop(name, None)
        if worker is None:
            return
        thread, cancel = worker
        cancel.set()
        if thread is not threading.current_thread():
            thread.join(_JOIN_SECONDS)

    def _run(self, name: str, cancel: threading.Event) -> None:
        try:
            doc = self.cloud.metadata.get(KIND_ENDPOINT, name)
            if doc is None:
                return
            kind = doc["Operation"]["Kind"]
            runner = {
                "create": self._run_create,
                "update": self._run_update,
                "weights": self._run_weights,
                "recover": self._run_recover,
            }[kind]
            runner(doc, cancel)
        except (deployments.Cancelled, KeyError):
            log.info("endpoint %s: its operation stopped (deleted, or the service stops)", name)
        except Exception as err:  # noqa: BLE001 - a bug fails the endpoint, never the service
            log.exception("endpoint %s failed", name)
            if not cancel.is_set() and self.cloud.metadata.get(KIND_ENDPOINT, name) is not None:
                self._finish(name, cancel, EndpointStatus="Failed", FailureReason=f"{err}")
        finally:
            state = self._hosting()
            with state["lock"]:
                worker = state["workers"].get(name)
                if worker is not None and worker[1] is cancel:
                    del state["workers"][name]

    def _finish(self, name: str, cancel: threading.Event, **fields: Any) -> None:
        """Write the end of an operation, unless it was cancelled (deleted, service stopping)."""
        if cancel.is_set():
            raise deployments.Cancelled(name)
        fields.setdefault("LastModifiedTime", time.time())
        fields.update(Operation=None, Pending=None)
        self.cloud.metadata.update(KIND_ENDPOINT, name, **fields)

    def _load_error(self) -> type[Exception]:
        from sfn_mlops.local.endpoints import EndpointError

        return EndpointError  # type: ignore[no-any-return]

    def _run_create(self, doc: dict[str, Any], cancel: threading.Event) -> None:
        name, target = doc["EndpointName"], doc["Operation"]["Target"]
        fleet = self._fleet(target, f"{target['ConfigName']}#{doc.get('Generation', 1)}")
        self._pending(name, target, 0.0, "Creating", "Launching the endpoint's instance(s).")
        try:
            self.endpoint_host().serve(name, [(fleet, 1.0)], self._capture(target))
        except self._load_error() as err:
            self._finish(name, cancel, EndpointStatus="Failed", FailureReason=str(err))
            return
        self._finish(
            name,
            cancel,
            EndpointStatus="InService",
            Serving={**target, "FleetId": fleet.fleet_id},
            FailureReason=None,
        )

    def _run_update(self, doc: dict[str, Any], cancel: threading.Event) -> None:
        name, operation = doc["EndpointName"], doc["Operation"]
        target, current = operation["Target"], doc["Serving"]
        new_fleet = self._fleet(target, f"{target['ConfigName']}#{doc['Generation']}")
        capacity = _capacity(target)

        def progress(state: deployments.Progress) -> None:
            self._pending(name, target, state.green_share, state.status, state.message)

        deployment = deployments.Deployment(
            endpoint_name=name,
            old_fleet=self._fleet(current, current["FleetId"]),
            new_fleet=new_fleet,
            capture=self._capture(target),
            plan=deployments.plan(operation.get("DeploymentConfig"), capacity),
            host=self.endpoint_host(),
            alarms_in_alarm=self._alarms_in_alarm,
            clock=time.monotonic,
            sleep=cancel.wait,
            time_scale=self.cloud.time_scale,
            on_progress=progress,
            cancelled=cancel.is_set,
            load_error=self._load_error(),
        )
        outcome = deployment.run()
        if outcome.result == deployments.SUCCEEDED:
            self._finish(
                name,
                cancel,
                EndpointStatus="InService",
                EndpointConfigName=target["ConfigName"],
                Serving={**target, "FleetId": new_fleet.fleet_id},
                FailureReason=None,
            )
        else:
            self._finish(
                name, cancel, EndpointStatus="InService", FailureReason=outcome.failure_reason
            )

    def _run_weights(self, doc: dict[str, Any], cancel: threading.Event) -> None:
        name, target = doc["EndpointName"], doc["Operation"]["Target"]
        fleet = self._fleet(target, target["FleetId"])
        try:
            self.endpoint_host().serve(name, [(fleet, 1.0)], self._capture(target))
        except self._load_error() as err:
            self._serve_again(name, doc["Serving"])
            self._finish(name, cancel, EndpointStatus="InService", FailureReason=str(err))
            return
        self._finish(name, cancel, EndpointStatus="InService", Serving=target, FailureReason=None)

    def _run_recover(self, doc: dict[str, Any], cancel: threading.Event) -> None:
        name, serving = doc["EndpointName"], doc["Serving"]
        fleet = self._fleet(serving, serving["FleetId"])
        try:
            self.endpoint_host().serve(name, [(fleet, 1.0)], self._capture(serving))
        except self._load_error() as err:
            self._finish(name, cancel, EndpointStatus="Failed", FailureReason=str(err))
            return
        fields: dict[str, Any] = {"EndpointStatus": "InService"}
        if doc["Operation"].get("Interrupted"):
            fields["FailureReason"] = (
                "The local service stopped while the endpoint was updating; the update was "
                f"rolled back and endpoint configuration {serving['ConfigName']} serves."
            )
        self._finish(name, cancel, **fields)

    def _serve_again(self, name: str, serving: dict[str, Any]) -> None:
        fleet = self._fleet(serving, serving["FleetId"])
        self.endpoint_host().serve(name, [(fleet, 1.0)], self._capture(serving))

    def _pending(
        self, name: str, target: dict[str, Any], share: float, status: str, message: str
    ) -> None:
        self.cloud.metadata.update(
            KIND_ENDPOINT,
            name,
            Pending={"Share": share, "Status": status, "Message": message, "Since": time.time()},
        )

    def _alarms_in_alarm(self, names: Sequence[str]) -> list[str]:
        """The alarms of ``names`` in state ALARM, read from the local CloudWatch."""
        try:
            cloudwatch = self.cloud.service("cloudwatch")
        except AwsError as err:
            if err.code != "NotImplemented":
                raise
            log.warning("no local CloudWatch: auto-rollback alarms %s are not watched", names)
            return []
        answer = cloudwatch.describe_alarms({"AlarmNames": list(names)})
        alarms = answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", [])
        return [alarm["AlarmName"] for alarm in alarms if alarm.get("StateValue") == "ALARM"]


def _capacity(serving: dict[str, Any]) -> int:
    return max(1, sum(int(variant["InstanceCount"]) for variant in serving["Variants"]))


def _variant_summaries(serving: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": v["VariantName"],
            "DeployedImages": [{"SpecifiedImage": v["Image"], "ResolvedImage": v["Image"]}],
            "CurrentWeight": v["Weight"],
            "DesiredWeight": v["Weight"],
            "CurrentInstanceCount": v["InstanceCount"],
            "DesiredInstanceCount": v["InstanceCount"],
        }
        for v in serving["Variants"]
    ]


def _pending_summary(doc: dict[str, Any]) -> dict[str, Any] | None:
    operation, pending = doc.get("Operation"), doc.get("Pending")
    if not operation or operation["Kind"] not in ("create", "update") or not pending:
        return None
    target = operation["Target"]
    variants = []
    for v in target["Variants"]:
        share = pending["Share"] if operation["Kind"] == "update" else 0.0
        variants.append(
            {
                "VariantName": v["VariantName"],
                "CurrentWeight": v["Weight"],
                "DesiredWeight": v["Weight"],
                "CurrentInstanceCount": math.ceil(round(share * v["InstanceCount"], 9)),
                "DesiredInstanceCount": v["InstanceCount"],
                "VariantStatus": [
                    {
                        "Status": pending["Status"],
                        "StatusMessage": pending["Message"],
                        "StartTime": timestamp(pending["Since"]),
                    }
                ],
            }
        )
        if v.get("InstanceType"):
            variants[-1]["InstanceType"] = v["InstanceType"]
    return {
        "EndpointConfigName": target["ConfigName"],
        "ProductionVariants": variants,
        "StartTime": timestamp(operation["StartTime"]),
    }


def _describe(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "EndpointName": doc["EndpointName"],
        "EndpointArn": doc["EndpointArn"],
        "EndpointConfigName": doc["EndpointConfigName"],
        "EndpointStatus": doc["EndpointStatus"],
        "CreationTime": timestamp(doc["CreationTime"]),
        "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
    }
    serving = doc.get("Serving")
    if serving:
        result["ProductionVariants"] = _variant_summaries(serving)
        capture = _data_capture_summary(serving.get("DataCaptureConfig"))
        if capture:
            result["DataCaptureConfig"] = capture
    if doc.get("FailureReason"):
        result["FailureReason"] = doc["FailureReason"]
    if doc.get("LastDeploymentConfig"):
        result["LastDeploymentConfig"] = doc["LastDeploymentConfig"]
    pending = _pending_summary(doc)
    if pending:
        result["PendingDeploymentSummary"] = pending
    return result
