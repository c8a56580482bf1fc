"""``--target k8s``: Deployment, Service, HorizontalPodAutoscaler (autoscaling/v2) and PodDisruptionBudget.

The pods run the docker target's image (its build context is in ``image/``) as the image's
non-root user, with a read-only root filesystem (an emptyDir on /tmp, where the server's worker
processes keep their metrics), no privilege escalation, no capabilities, probes on KServe v2's
health routes, and CPU/memory requests and limits. The manifests are validated at deploy time
with ``kubernetes-validate`` (strict: unknown fields are errors) against several Kubernetes
versions when the ``deploy`` extra is installed.
"""
from __future__ import annotations

import re
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.export.deploy import docker
from cnnkit.export.deploy.bundle import Bundle, readme

K8S_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
UID = 10001  # the Dockerfile's `cnnkit` user
RESOURCES = {"requests": {"cpu": "500m", "memory": "768Mi"}, "limits": {"cpu": "1", "memory": "1536Mi"}}
MANIFESTS = ("deployment", "service", "hpa", "pdb")


def dns_name(name: str) -> str:
    """A run name as a Kubernetes object name (RFC 1123 label: lowercase, digits, '-')."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not out:
        raise CnnkitError(f"cannot make a Kubernetes name from run name {name!r}")
    return out


def labels(b: Bundle) -> dict[str, str]:
    return {"app.kubernetes.io/name": dns_name(b.name), "app.kubernetes.io/version": f"v{b.version}",
            "app.kubernetes.io/part-of": "cnnkit"}


def probes(port: Any) -> dict[str, Any]:
    """Readiness and liveness on the v2 health routes; a startup probe covers the model load."""
    return {
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 2, "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 10, "timeoutSeconds": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": port}, "periodSeconds": 20, "timeoutSeconds": 3,
                          "failureThreshold": 3},
    }


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": UID, "runAsGroup": UID, "capabilities": {"drop": ["ALL"]}}


def container(b: Bundle, port: int, name: str = "cnnkit") -> dict[str, Any]:
    return {"name": name, "image": b.image, "imagePullPolicy": "IfNotPresent", "command": docker.serve_args(b, port)[:2],
            "args": docker.serve_args(b, port)[2:], "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [{"name": "OMP_NUM_THREADS", "value": "1"}], **probes(port), "resources": RESOURCES,
            "securityContext": container_security(), "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}


def manifests(b: Bundle) -> dict[str, dict[str, Any]]:
    name, lab = dns_name(b.name), labels(b)
    select = {"app.kubernetes.io/name": name}
    meta = {"name": name, "labels": lab}
    pod = {"automountServiceAccountToken": False,
           "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [container(b, docker.SERVE_PORT)], "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]}
    return {
        "deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                       "spec": {"replicas": 2, "selector": {"matchLabels": select},
                                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                                "template": {"metadata": {"labels": lab}, "spec": pod}}},
        "service": {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"type": "ClusterIP", "selector": select,
                             "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
        "hpa": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                         "minReplicas": 2, "maxReplicas": 6,
                         "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                                       "target": {"type": "Utilization", "averageUtilization": 70}}}]}},
        "pdb": {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
                "spec": {"minAvailable": 1, "selector": {"matchLabels": select}}},
    }


def validate(docs: list[dict[str, Any]], versions: tuple[str, ...] = K8S_VERSIONS) -> list[str] | None:
    """Validate strictly against each Kubernetes version; None when kubernetes-validate is missing."""
    try:
        import kubernetes_validate
    except ImportError:
        return None
    for version in versions:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise CnnkitError(f"{doc['kind']} does not validate for Kubernetes {version}: {exc.message}") from None
    return list(versions)


def dump(doc: dict[str, Any]) -> str:
    """YAML as people write manifests: no anchors and aliases for the label maps used twice."""
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(doc, Dumper=Plain, sort_keys=False)


def validated_line(versions: list[str] | None, what: str) -> tuple[list[str], list[str]]:
    if versions is None:
        return [], [f"{what} were not schema-validated: install the deploy extra (pip install \"cnnkit[deploy]\") "
                    "and deploy again to validate them with kubernetes-validate"]
    return [f"{what} validate with `kubernetes-validate` in strict mode (unknown fields are errors) for Kubernetes "
            + ", ".join(versions)], []


def write(b: Bundle) -> dict:
    docs = manifests(b)
    for key in MANIFESTS:
        b.text(f"manifests/{key}.yaml", dump(docs[key]))
    versions = validate(list(docs.values()))
    ok, missing = validated_line(versions, "the Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget")
    docker.write_context(b, "image")
    b.verified += ok + [f"the pods run as uid {UID} (the image's user), non-root, read-only root filesystem, no privilege "
                        "escalation, all capabilities dropped; probes on /v2/health/ready and /v2/health/live"]
    b.not_verified += missing + [
        "applying the manifests to a cluster (`kubectl apply`), the image pull, the probes passing and the autoscaler "
        "reacting: cnnkit has no cluster; `kubectl apply --dry-run=server` against yours checks admission as well",
        "the image build (see `image/`; its smoke stage serves the run and calls /predict)"]
    name = dns_name(b.name)
    commands = f"""```bash
{docker.push_lines(b, "image/", "manifests/deployment.yaml")}
kubectl apply -f manifests/
kubectl rollout status deployment/{name}
kubectl port-forward service/{name} 8000:80 &
curl -F file=@examples/00.png 'localhost:8000/predict?top_k=3'
```

{docker.podman_notes("image/")}"""
    contents = ["`manifests/deployment.yaml`: 2 replicas of `cnnkit serve` on port 8000, rolling updates with no unavailable pod",
                "`manifests/service.yaml`: ClusterIP port 80", "`manifests/hpa.yaml`: 2-6 replicas at 70% CPU (autoscaling/v2)",
                "`manifests/pdb.yaml`: at least one pod through voluntary disruptions",
                "`image/`: the docker target's build context with the run baked in", "`examples/`: test images and their predictions"]
    readme(b, "k8s", f"The pods serve `{b.ref}` with cnnkit's server (its JSON API and KServe v2).", contents, commands,
           why="The pods run cnnkit's own server image (PyTorch), built from the cnnkit sources in `image/`.")
    return {"validated_for": versions, "manifests": [f"manifests/{k}.yaml" for k in MANIFESTS]}
