"""The AWS side: deploying the stack and running it (`deploy`, `run`), and checking it offline.

`python -m sfn_mlops.aws.checks template.yaml` runs every check of the template, its IAM and the
state machine definitions that is code (see `checks`); `make validate` runs it together with
cfn-lint, statelint and `sam validate --lint`, all without an AWS account or the network.
"""
