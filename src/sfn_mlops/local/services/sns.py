"""Amazon SNS: topics, and every published message kept so the CLI can show it."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from sfn_mlops.local.errors import AwsError

TOPICS = "sns/topic"
MESSAGES = "sns/messages"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class SNS:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.db = cloud.metadata

    def create_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        if not _TOPIC_NAME.match(name):
            raise AwsError(
                "InvalidParameter",
                "Invalid parameter: Topic Name must be made up of only uppercase and lowercase "
                "ASCII letters, numbers, underscores, and hyphens, and must be 1-256 characters",
            )
        arn = self.cloud.arn("sns", name)
        if self.db.get(TOPICS, arn) is None:
            self.db.put(TOPICS, arn, {"TopicArn": arn, "Attributes": params.get("Attributes", {})})
        return {"TopicArn": arn}

    def _topic(self, arn: str) -> dict[str, Any]:
        topic = self.db.get(TOPICS, arn)
        if topic is None:
            raise AwsError("NotFound", f"Topic does not exist: {arn}", 404)
        return topic

    def list_topics(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Topics": [{"TopicArn": t["TopicArn"]} for t in self.db.list(TOPICS)]}

    def get_topic_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._topic(params["TopicArn"])
        return {"Attributes": {"TopicArn": topic["TopicArn"], **topic["Attributes"]}}

    def delete_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        self.db.delete(TOPICS, params["TopicArn"])
        return {}

    def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("TopicArn") or params.get("TargetArn")
        if not arn:
            raise AwsError(
                "InvalidParameter",
                "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter",
            )
        self._topic(arn)
        message_id = str(uuid.uuid4())
        self.db.append(
            MESSAGES,
            {
                "MessageId": message_id,
                "TopicArn": arn,
                "Subject": params.get("Subject"),
                "Message": params["Message"],
                "Timestamp": time.time(),
            },
        )
        return {"MessageId": message_id}


def published_messages(cloud: Any, after: int = 0) -> list[dict[str, Any]]:
    """Messages published to any local topic, oldest first."""
    return list(cloud.metadata.read(MESSAGES, after))
