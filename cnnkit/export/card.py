"""The model card (README.md) of a Hub folder: a YAML header the Hub indexes, a body people read.

The header is built with ``huggingface_hub.ModelCardData`` so its ``model-index`` is the one the
Hub parses; its test-set results are the clean-split figures of ``cnnkit eval`` for the run
(accuracy and macro F1, as ``cnnkit eval --json`` prints them), never recomputed here.
"""
from __future__ import annotations

from typing import Any

import yaml

from cnnkit.errors import CnnkitError

# The Hub's dataset ids for the built-in datasets (so the card links to them).
HUB_DATASETS = {"mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10"}
DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

_LIMITS = {
    "digits": ("The model was trained on centred 28x28 white-on-black digits (MNIST's format). Photos of digits must "
               "first go through the same steps (grayscale, invert dark-on-light, crop to the ink, fit into 20x20, "
               "centre by centre of mass): `cnnkit predict` and `cnnkit serve` do this by default; a naive resize of "
               "a photo is read at about chance level."),
    "gray": ("Trained on small centred gray images of one dataset; inputs from elsewhere (other backgrounds, "
             "framing, colours) are outside what the test figures describe."),
    "photo": ("Trained on small photos of one dataset at the input size below; images of other subjects, "
              "resolutions or cameras are outside what the test figures describe."),
}


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise CnnkitError('writing a Hub folder needs huggingface_hub: pip install "cnnkit[hub]"') from None
    return huggingface_hub


def eval_results(summary: dict[str, Any]) -> list[Any]:
    """The card's ``model-index`` entries: test accuracy and macro F1 from a ``cnnkit eval`` summary."""
    hf = _hub()
    clean = summary["results"]["clean"]
    common = dict(task_type="image-classification", task_name="Image Classification",
                  dataset_type=HUB_DATASETS.get(summary["data"], summary["data"]),
                  dataset_name=DISPLAY.get(summary["data"], summary["data"]), dataset_split=summary["split"])
    return [hf.EvalResult(metric_type="accuracy", metric_name="Accuracy", metric_value=summary["accuracy"], **common),
            hf.EvalResult(metric_type="f1", metric_name="Macro F1", metric_value=clean["macro_f1"],
                          metric_args={"average": "macro"}, **common)]


def card_data(summary: dict[str, Any], spec: dict[str, Any], model_name: str, license: str) -> Any:
    hf = _hub()
    data = summary["data"]
    return hf.ModelCardData(
        library_name="cnnkit", pipeline_tag="image-classification", license=license, model_name=model_name,
        tags=["cnnkit", "image-classification", "pytorch", "safetensors", spec["name"].replace(":", "-")],
        datasets=[HUB_DATASETS[data]] if data in HUB_DATASETS else None, metrics=["accuracy", "f1"],
        eval_results=eval_results(summary))


def _metrics_table(summary: dict[str, Any]) -> list[str]:
    m = summary["results"]["clean"]
    (alo, ahi), (flo, fhi) = m["accuracy_ci"], m["macro_f1_ci"]
    lines = ["| metric | value | 95% interval |", "| --- | --- | --- |",
             f"| accuracy | {m['accuracy']:.4f} | {alo:.4f} - {ahi:.4f} |",
             f"| macro F1 | {m['macro_f1']:.4f} | {flo:.4f} - {fhi:.4f} |",
             f"| loss (cross-entropy) | {m['loss']:.4f} | |", f"| expected calibration error | {m['ece']:.4f} | |",
             "", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |" for r in m["per_class"]]
    return lines


def card_body(summary: dict[str, Any], spec: dict[str, Any], config: dict[str, Any], data: dict[str, Any],
              model_name: str, images: dict[str, str], repo_id: str | None = None) -> str:
    """The Markdown under the header: results, images, how to use, training, limitations."""
    pre = spec["preprocess"]
    c, s = pre["channels"], pre["input_size"]
    kind = pre.get("kind", "photo")
    lines = [f"# {model_name}", "",
             f"A `{spec['name']}` image classifier ({spec['num_classes']} classes) trained with "
             f"cnnkit on {DISPLAY.get(summary['data'], summary['data'])}. "
             f"Input: {c} x {s} x {s}, normalized with mean {pre['mean']} and std {pre['std']}.", "",
             f"## Results on the {summary['split']} split ({summary['images']} images)", "",
             "Figures of `cnnkit eval` (95% percentile-bootstrap intervals, 1000 resamples).", "",
             *_metrics_table(summary), ""]
    lines += [f"![{alt}]({name})" for name, alt in images.items()]
    hub = f"hf://{repo_id or 'OWNER/REPO'}"
    lines += ["", "## How to use", "", "```python", "import cnnkit", f'run = cnnkit.load("{hub}")   # or a local copy of this folder',
              'cnnkit.Predictor(run).predict(["image.png"], top_k=3)', "```", "",
              "```bash", f"cnnkit predict {hub} image.png --top-k 3", f"cnnkit serve {hub}", "```", "",
              "Without cnnkit: `model.safetensors` holds the weights; `config.json` names the architecture "
              "(`architecture`, `model_args`), the classes (`label_names`) and the input (`pretrained_cfg`).", "",
              "## Training data", "",
              f"- dataset: `{data.get('name')}`; images per split: {data.get('counts')}",
              f"- data checksum (sha256 of the decoded images and labels): `{data.get('checksum')}`", "",
              "## Training config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "",
              "## Intended use and limitations", "",
              f"For classifying images like those of its training set into the {spec['num_classes']} classes "
              f"{', '.join(map(str, spec['classes'][:12]))}{' ...' if len(spec['classes']) > 12 else ''}. "
              "It always answers one of these classes, also for images of none of them.", "",
              _LIMITS.get(kind, _LIMITS["photo"]), ""]
    return "\n".join(lines)


def render_card(summary: dict[str, Any], spec: dict[str, Any], config: dict[str, Any], data: dict[str, Any],
                model_name: str, images: dict[str, str], license: str = "apache-2.0", repo_id: str | None = None) -> str:
    """README.md text; checked to parse with huggingface_hub.ModelCard before it is returned."""
    hf = _hub()
    header = card_data(summary, spec, model_name, license).to_yaml()
    text = f"---\n{header}\n---\n\n{card_body(summary, spec, config, data, model_name, images, repo_id)}"
    hf.ModelCard(text, ignore_metadata_errors=False)  # raises if the Hub could not read it
    return text
