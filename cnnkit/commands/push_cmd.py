"""``cnnkit push RUN OWNER/REPO``: publish a run's Hub folder to the Hugging Face Hub in one commit."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("push", help="publish a run to the Hugging Face Hub (weights in LFS, model card, config)",
                         description="Write the run's Hub folder (as `cnnkit export --format hf`) and upload it to "
                                     "OWNER/REPO in one commit, creating the repository if needed. HF_ENDPOINT "
                                     "selects another Hub; cnnkit.load('hf://OWNER/REPO') loads it back.")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("repo", metavar="OWNER/REPO", help="the model repository on the Hub")
    p.add_argument("--private", action="store_true", help="create the repository private (when it does not exist)")
    p.add_argument("--revision", metavar="BRANCH", help="push to this branch (created from main if new; default: main)")
    p.add_argument("--token", help="Hub access token (default: $HF_TOKEN, then the cached `hf auth login`)")
    p.add_argument("--include-onnx", action="store_true", help="also upload the checked model.onnx")
    p.add_argument("--data-dir", help="root of the built-in datasets (the card's test results need the test set)")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON: repo, commit, files with their sha256")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.export.hub import push

    result = push(args.run, args.repo, private=args.private, revision=args.revision, token=args.token,
                  runs_dir=args.runs_dir, data_dir=args.data_dir, include_onnx=args.include_onnx)
    text = (f"{result['run']} -> {result['commit_url']} ({len(result['files'])} files: {', '.join(result['files'])})\n"
            f"load it with cnnkit.load(\"{result['load']}\")")
    emit(args, result, text)
    return 0
