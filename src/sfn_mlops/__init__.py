"""sfn-mlops: an MLOps pipeline on AWS Step Functions that also runs entirely on one machine."""

__version__ = "0.1.0"
