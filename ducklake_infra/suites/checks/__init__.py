"""Pure check functions: ``check_x(objects, spec) -> Result``, one module per area
(minio, postgresql, backend, secrets; security, resilience and supply_chain beside this
package), all registered in the one registry of ``core``.

No cluster access here: tests feed live objects (``ducklake_infra.suites.live.gather``), the
negative test feeds ``helm template`` output, unit tests feed hand-written dicts. Every
name comes from the stack spec. Evidence never contains secret values (only names, keys
and verdicts).
"""

from ducklake_infra.provision.kube import decode_secret  # noqa: F401
from ducklake_infra.suites.checks.core import CHECKS, CheckInputMissing, as_control, check, run  # noqa: F401
from ducklake_infra.suites.objects import same_quantity  # noqa: F401
from ducklake_infra.suites.checks.minio import (  # noqa: F401
    check_backend_s3_user_not_root,
    check_minio_not_default_credentials,
    check_minio_pod_security,
    check_minio_pods_ready,
    check_minio_pvc,
    check_minio_release,
    check_minio_root_secret,
    check_minio_services,
    check_minio_mode)
from ducklake_infra.suites.checks.minio_iam import check_only_maintenance_deletes  # noqa: F401
from ducklake_infra.suites.checks.ha import (  # noqa: F401
    check_erasure_set_health,
    check_minio_disruption_budget,
    check_minio_parity,
    check_minio_servers_spread)
from ducklake_infra.suites.checks.ha_backend import check_backend_replicas_spread  # noqa: F401
from ducklake_infra.suites.checks.ha_postgresql import (  # noqa: F401
    check_pg_members_spread,
    check_pg_primary_and_sync_standbys)
from ducklake_infra.suites.checks.postgresql import (  # noqa: F401
    LC_ENGLISH,
    check_pg_lc_messages,
    check_pg_pod,
    check_pg_pvc,
    check_pg_release,
    check_pg_secrets,
    check_pg_services,
    check_pg_members,
    lc_messages_is_english)
from ducklake_infra.suites.checks.backend import (  # noqa: F401
    CREDENTIAL_ENV,
    EXPECTED_CONFIG,
    check_backend_available,
    check_backend_config,
    check_backend_drains_before_stopping,
    check_backend_non_root,
    check_backend_probes,
    check_backend_resources,
    check_backend_service,
    expected_backend_config)
from ducklake_infra.suites.checks.secrets import (  # noqa: F401
    check_annotations_hold_no_secrets,
    check_configmaps_hold_no_secrets,
    check_env_holds_no_secrets,
    check_logs_hold_no_secrets,
    secret_values_of)

# checks kept in modules of their own register with the same registry
import ducklake_infra.suites.security  # noqa: E402,F401
import ducklake_infra.suites.resilience  # noqa: E402,F401
import ducklake_infra.suites.supply_chain  # noqa: E402,F401
import ducklake_infra.suites.drift  # noqa: E402,F401
