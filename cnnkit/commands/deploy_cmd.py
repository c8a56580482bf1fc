"""``cnnkit deploy RUN --target TARGET --out DIR``: a self-contained bundle for one platform, checked offline."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir

TARGET_HELP = {
    "docker": "build context: the multi-stage Dockerfile with the run baked in (podman/docker build)",
    "kserve": "InferenceService (serving.kserve.io/v1beta1), cnnkit's server as a custom v2 predictor on 8080",
    "k8s": "Deployment, Service, HorizontalPodAutoscaler (autoscaling/v2), PodDisruptionBudget",
    "cerebrium": "cerebrium.toml + main.py with predict(image, top_k=5) (ONNX Runtime, no torch)",
    "watsonx": "ONNX archive for watsonx.ai, deploy.py (ibm-watsonx-ai, --dry-run), payload.json, score_local.py",
    "hf-endpoint": "Hugging Face Hub folder + handler.py (EndpointHandler) + requirements.txt",
}


def register(verbs: argparse._SubParsersAction) -> None:
    epilog = "targets:\n" + "\n".join(f"  {k:<12} {v}" for k, v in TARGET_HELP.items()) + (
        "\n\nEvery bundle holds the run, its code, pinned requirements and a README.md with the commands to go live "
        "and what was verified offline.\nexample:\n  cnnkit deploy mnist-cnn --target cerebrium --out deploy/cerebrium")
    p = verbs.add_parser("deploy", help="write a deploy bundle for docker, kserve, k8s, cerebrium, watsonx or hf-endpoint",
                         description="Write a self-contained, offline-checked deploy bundle of a run for one platform.",
                         epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("--target", required=True, metavar="TARGET", help="one of: " + ", ".join(TARGET_HELP))
    p.add_argument("--out", required=True, metavar="DIR", help="the bundle's folder (must be new or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="replace what is in --out (only once the new bundle is complete)")
    p.add_argument("--image", help="container image name for docker/kserve/k8s (default: cnnkit-NAME:vN)")
    p.add_argument("--data-dir", help="root of the built-in datasets (the checks use the run's test images)")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.export.deploy import deploy

    summary = deploy(args.run, args.target, args.out, force=args.force, runs_dir=args.runs_dir, data_dir=args.data_dir,
                     image=args.image)
    lines = [f"{summary['target']} bundle of {summary['run']} in {summary['out']} ({summary['files']} files); see its README.md",
             "verified offline:", *[f"  - {v}" for v in summary["verified"]],
             "not verified (needs the platform):", *[f"  - {v}" for v in summary["not_verified"]]]
    emit(args, summary, "\n".join(lines))
    return 0
