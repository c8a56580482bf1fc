"""Store this bundle's ONNX model in watsonx.ai, deploy it online and score payload.json.

Written by ``cnnkit deploy --target watsonx``; the names it uses are in ``watsonx.json``.
Credentials come from the environment and are read only when not ``--dry-run``:

    WATSONX_URL       e.g. https://us-south.ml.cloud.ibm.com
    WATSONX_APIKEY    an IBM Cloud API key
    WATSONX_SPACE_ID  the deployment space

    pip install -r requirements-deploy.txt
    python deploy.py --dry-run       # print the calls, touch nothing (no credentials, no ibm_watsonx_ai)
    python deploy.py                 # store, deploy, score; prints the deployment id and the labels
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = ("WATSONX_URL", "WATSONX_APIKEY", "WATSONX_SPACE_ID")


def plan(cfg: dict) -> list[str]:
    """The calls ``run`` makes, in order, as Python a reader can check against the SDK's documentation."""
    return [
        "client = ibm_watsonx_ai.APIClient(ibm_watsonx_ai.Credentials(url=$WATSONX_URL, api_key=$WATSONX_APIKEY), "
        "space_id=$WATSONX_SPACE_ID)",
        f"software_spec_id = client.software_specifications.get_id_by_name({cfg['software_spec']!r})",
        f"stored = client.repository.store_model(model={cfg['model_archive']!r}, meta_props={{"
        f"NAME: {cfg['name']!r}, TYPE: {cfg['model_type']!r}, SOFTWARE_SPEC_ID: software_spec_id}})",
        "model_id = client.repository.get_model_id(stored)",
        f"deployment = client.deployments.create(model_id, meta_props={{NAME: {cfg['deployment_name']!r}, ONLINE: {{}}}})",
        "deployment_id = client.deployments.get_id(deployment)",
        "result = client.deployments.score(deployment_id, json.load(open('payload.json')))",
    ]


def run(cfg: dict) -> dict:
    from ibm_watsonx_ai import APIClient, Credentials

    missing = [k for k in ENV if not os.environ.get(k)]
    if missing:
        raise SystemExit(f"set {', '.join(missing)} (see the top of deploy.py)")
    client = APIClient(Credentials(url=os.environ["WATSONX_URL"], api_key=os.environ["WATSONX_APIKEY"]),
                       space_id=os.environ["WATSONX_SPACE_ID"])
    sw_id = client.software_specifications.get_id_by_name(cfg["software_spec"])
    meta = client.repository.ModelMetaNames
    stored = client.repository.store_model(model=str(HERE / cfg["model_archive"]), meta_props={
        meta.NAME: cfg["name"], meta.TYPE: cfg["model_type"], meta.SOFTWARE_SPEC_ID: sw_id})
    model_id = client.repository.get_model_id(stored)
    conf = client.deployments.ConfigurationMetaNames
    deployment = client.deployments.create(model_id, meta_props={conf.NAME: cfg["deployment_name"], conf.ONLINE: {}})
    deployment_id = client.deployments.get_id(deployment)
    result = client.deployments.score(deployment_id, json.loads((HERE / "payload.json").read_text()))
    values = [row for p in result["predictions"] for row in p["values"]]
    labels = [cfg["classes"][max(range(len(row)), key=row.__getitem__)] for row in values]
    return {"model_id": model_id, "deployment_id": deployment_id, "labels": labels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the calls without making them")
    args = parser.parse_args(argv)
    cfg = json.loads((HERE / "watsonx.json").read_text())
    if args.dry_run:
        print("\n".join(plan(cfg)))
        return 0
    print(json.dumps(run(cfg), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
