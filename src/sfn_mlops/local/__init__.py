"""The local cloud: AWS's APIs answered on one machine, reached through plain boto3."""
