"""Local deploy treats a rule as CloudFormation does: a deploy of the same template leaves a
rule's state alone (the A/B tests' schedule, turned on by DeployModel, stays on); a template
that changes the rule updates it."""

from __future__ import annotations

from pathlib import Path

import boto3

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.deploy import deploy

ROOT = Path(__file__).resolve().parents[2]
RULE = "sfn-mlops-ab-tests"


def _project(destination: Path, template: str) -> Path:
    destination.mkdir()
    (destination / "template.yaml").write_text(template)
    for name in ("lambdas", "containers", "state_machines"):
        (destination / name).symlink_to(ROOT / name)
    return destination


def test_a_rule_keeps_its_state_until_the_template_changes_it(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    events = boto3.client("events")
    real = (ROOT / "template.yaml").read_text()
    deploy(cloud, _project(tmp_path / "first", real))
    assert events.describe_rule(Name=RULE)["State"] == "DISABLED"  # the template's
    events.enable_rule(Name=RULE)  # as DeployModel does when a test starts
    deploy(cloud, _project(tmp_path / "again", real))
    assert events.describe_rule(Name=RULE)["State"] == "ENABLED"
    changed = real.replace("Default: rate(5 minutes)", "Default: rate(10 minutes)")
    assert changed != real
    deploy(cloud, _project(tmp_path / "changed", changed))
    rule = events.describe_rule(Name=RULE)
    assert (rule["State"], rule["ScheduleExpression"]) == ("DISABLED", "rate(10 minutes)")
