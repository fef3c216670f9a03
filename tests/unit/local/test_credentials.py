"""The workspace's keys: minted once per principal, private, stable, found from another process.

No service and no network: the key store reads and writes a temporary workspace.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sfn_mlops.local.credentials import ADMIN_ARN, KeyStore, Principal

ROLE = "arn:aws:iam::123456789012:role/pipeline"


def test_the_file_is_private_and_the_keys_survive_a_restart(tmp_path: Path) -> None:
    first = KeyStore(tmp_path).admin()
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    again = KeyStore(tmp_path)  # a restarted service, or the CLI, reads the same keys
    assert again.admin() == first
    assert again.lookup(first.access_key_id) == first
    assert first.principal == Principal(ADMIN_ARN) and first.principal.is_admin


def test_each_principal_has_its_own_key_pair(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    admin = keys.admin()
    lambda_role = keys.for_role(ROLE, "ReadEvaluation")
    job_role = keys.for_role(ROLE, "SageMaker")
    assert len({admin.access_key_id, lambda_role.access_key_id, job_role.access_key_id}) == 3
    assert len({admin.secret_access_key, lambda_role.secret_access_key}) == 2
    assert admin.access_key_id.startswith("AKIA") and len(admin.access_key_id) == 20
    assert lambda_role.access_key_id.startswith("ASIA") and len(lambda_role.secret_access_key) == 40
    assert keys.for_role(ROLE, "ReadEvaluation") == lambda_role  # minted once
    assert keys.lookup(job_role.access_key_id).principal.caller_arn == (  # type: ignore[union-attr]
        "arn:aws:sts::123456789012:assumed-role/pipeline/SageMaker"
    )


def test_a_key_minted_by_another_process_is_found_and_none_is_lost(tmp_path: Path) -> None:
    service, cli = KeyStore(tmp_path), KeyStore(tmp_path)
    admin = service.admin()
    minted_elsewhere = cli.for_role(ROLE, "StepFunctions")
    assert service.lookup(minted_elsewhere.access_key_id) == minted_elsewhere
    also_here = service.for_role(ROLE, "SageMaker")
    on_disk = json.loads((tmp_path / "credentials.json").read_text())["AccessKeys"]
    assert {item["AccessKeyId"] for item in on_disk} == {
        admin.access_key_id,
        minted_elsewhere.access_key_id,
        also_here.access_key_id,
    }
    assert service.lookup("AKIAUNKNOWN000000000") is None


def test_the_service_token_is_stable_and_checked_in_constant_time(tmp_path: Path) -> None:
    token = KeyStore(tmp_path).service_token()
    assert len(token) >= 32
    assert KeyStore(tmp_path).token_matches(token)
    assert not KeyStore(tmp_path).token_matches(token[:-1] + "x")
    assert not KeyStore(tmp_path).token_matches(None)
