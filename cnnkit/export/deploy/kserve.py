"""``--target kserve``: an InferenceService (serving.kserve.io/v1beta1) with a custom predictor container.

The predictor is the docker target's image (build context in ``image/``) running ``cnnkit
serve`` on port 8080, KServe's convention for custom containers; cnnkit's server speaks the
v2 / Open Inference Protocol itself (``/v2/models/NAME/infer``), so the model name KServe
clients use is the served name, the run's name. Probes on ``/v2/health/ready`` and
``/v2/health/live``, requests and limits, and the k8s target's security context. KServe's CRD
is not installed offline, so the part of the predictor that is a Kubernetes PodSpec is
validated strictly with kubernetes-validate, as a Pod, and the KServe fields are checked here.
"""
from __future__ import annotations

import copy
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.export.deploy import docker, k8s
from cnnkit.export.deploy.bundle import Bundle, readme

PORT = 8080
API_VERSION = "serving.kserve.io/v1beta1"
# Fields of a v1beta1 PredictorSpec that are KServe's own, beside the embedded PodSpec fields.
KSERVE_FIELDS = ("minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "containerConcurrency", "timeout",
                 "canaryTrafficPercent", "logger", "batcher")


def inference_service(b: Bundle) -> dict[str, Any]:
    c = k8s.container(b, PORT, name="kserve-container")
    c["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]  # Knative allows one port, unnamed or http1/h2c
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        c[probe]["httpGet"]["port"] = PORT
    return {
        "apiVersion": API_VERSION, "kind": "InferenceService",
        "metadata": {"name": k8s.dns_name(b.name), "labels": k8s.labels(b)},
        "spec": {"predictor": {
            "minReplicas": 1, "maxReplicas": 4, "scaleMetric": "cpu", "scaleTarget": 70,
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": k8s.UID, "runAsGroup": k8s.UID, "fsGroup": k8s.UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [c], "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]}},
    }


def as_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor's PodSpec part as a core/v1 Pod, for kubernetes-validate."""
    spec = {k: v for k, v in copy.deepcopy(isvc["spec"]["predictor"]).items() if k not in KSERVE_FIELDS}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": isvc["metadata"]["name"]}, "spec": spec}


def check(isvc: dict[str, Any]) -> None:
    """What KServe requires of a custom v2 predictor that no offline schema checks for us."""
    pred = isvc["spec"]["predictor"]
    (c,) = pred["containers"]
    problems = [
        isvc["apiVersion"] != API_VERSION and f"apiVersion is {isvc['apiVersion']}",
        c["name"] != "kserve-container" and "the container is not named kserve-container",
        [p["containerPort"] for p in c["ports"]] != [PORT] and f"the container does not expose exactly port {PORT}",
        c["readinessProbe"]["httpGet"]["path"] != "/v2/health/ready" and "readiness is not /v2/health/ready",
        c["livenessProbe"]["httpGet"]["path"] != "/v2/health/live" and "liveness is not /v2/health/live",
        not (c["resources"].get("requests") and c["resources"].get("limits")) and "requests or limits are missing",
        pred["minReplicas"] > pred["maxReplicas"] and "minReplicas exceeds maxReplicas",
    ]
    if any(problems):
        raise CnnkitError("the InferenceService is not a valid custom v2 predictor: " + "; ".join(p for p in problems if p))


def write(b: Bundle) -> dict:
    isvc = inference_service(b)
    check(isvc)
    versions = k8s.validate([as_pod(isvc)])
    b.text("inferenceservice.yaml", k8s.dump(isvc))
    docker.write_context(b, "image")
    ok, missing = k8s.validated_line(versions, "the predictor's pod fields (containers, probes, resources, security context)")
    name = k8s.dns_name(b.name)
    b.verified += ok + [f"the InferenceService is {API_VERSION}, one container `kserve-container` on port {PORT} running "
                        f"`cnnkit serve` (which answers the v2 protocol as `{b.name}`), probes on /v2/health/ready and "
                        "/v2/health/live, requests and limits set"]
    b.not_verified += missing + [
        "KServe's own admission (its CRD schema and webhooks): cnnkit has no cluster with KServe; "
        "`kubectl apply --dry-run=server -f inferenceservice.yaml` against yours checks it",
        "the predictor becoming Ready behind Knative/Istio, autoscaling, and the image pull",
        "the image build (see `image/`; its smoke stage serves the run and calls /predict)"]
    commands = f"""```bash
{docker.push_lines(b, "image/", "inferenceservice.yaml")}
kubectl apply -f inferenceservice.yaml
kubectl wait --for=condition=Ready inferenceservice/{name} --timeout=300s
URL=$(kubectl get inferenceservice {name} -o jsonpath='{{.status.url}}')
curl "$URL/v2/models/{b.name}"                                   # v2 metadata: inputs UINT8 / FP32 / BYTES
curl -F file=@examples/00.png "$URL/predict?top_k=3"             # cnnkit's JSON API works too
```

The v2 infer request takes `UINT8` pixels (N, C, S, S), `FP32` in 0..1, or `BYTES` encoded images:
`tritonclient.http.InferenceServerClient(HOST).infer("{b.name}", inputs)` works unchanged.

{docker.podman_notes("image/")}"""
    contents = [f"`inferenceservice.yaml`: the InferenceService `{name}` (custom predictor, v2 protocol on {PORT})",
                "`image/`: the docker target's build context with the run baked in", "`examples/`: test images and their predictions"]
    readme(b, "kserve", f"KServe routes to cnnkit's own server, which serves `{b.ref}` as model `{b.name}`.", contents, commands,
           why="The predictor runs cnnkit's own server image (PyTorch), built from the cnnkit sources in `image/`.")
    return {"validated_for": versions, "manifest": "inferenceservice.yaml"}
