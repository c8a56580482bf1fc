"""Default recipes: `cnnkit train` with no model named gets its dataset's recipe; naming anything model-wise
gets the plain defaults, exactly as before (so older commands and configs train what they trained)."""
from pathlib import Path

import pytest

from cnnkit.cli import build_parser, config_from_args
from cnnkit.config import Config
from cnnkit.training.recipes import FINETUNE, RECIPES


def _cfg(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_the_default_job_is_the_mnist_recipe_and_flags_still_win():
    cfg = _cfg()
    assert (cfg.data.name, cfg.model.name, cfg.model.kwargs) == ("mnist", "airbench", {"widths": [32, 64, 128]})
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.schedule, cfg.train.lookahead) == (512, 0.75, "triangle", True)
    assert cfg.data.val_fraction == Config().data.val_fraction  # the recipe keeps a validation split by default
    flagged = _cfg("--epochs", "2", "--lr", "0.5", "--batch-size", "256")
    assert (flagged.model.name, flagged.train.epochs, flagged.train.lr, flagged.train.batch_size) == ("airbench", 2, 0.5, 256)


@pytest.mark.parametrize("argv", [("--model", "cnn"), ("--model-kwargs", "width=8"), ("--framework", "keras"),
                                  ("--data", "fashion-mnist"), ("--init", "some-run"), ("--pretrained",)])
def test_no_recipe_once_the_model_is_named_or_the_data_has_none(argv):
    plain = Config.from_dict({"data": {"name": "fashion-mnist"}} if "fashion-mnist" in argv else {})
    cfg = _cfg(*argv)
    assert cfg.train.batch_size == plain.train.batch_size and cfg.train.lookahead is False
    assert cfg.model.name == "cnn"


def test_a_config_file_naming_a_model_gets_no_recipe(tmp_path: Path):
    f = tmp_path / "lenet.yaml"
    f.write_text("model: {name: lenet5}\ntrain: {epochs: 3}\n")
    cfg = _cfg("--config", str(f))
    assert (cfg.model.name, cfg.train.epochs, cfg.train.batch_size) == ("lenet5", 3, Config().train.batch_size)


def test_every_recipe_is_a_valid_config():
    for data, recipe in RECIPES.items():
        cfg = Config.from_dict({**recipe, "data": {"name": data}})
        assert cfg.model.name == recipe["model"]["name"]


def test_starting_from_learned_weights_gets_the_fine_tuning_optimizer():
    tuned = _cfg("--model", "efficientnet-lite0", "--pretrained")
    want = FINETUNE["pretrained"]
    assert (tuned.train.optimizer, tuned.train.lr, tuned.train.weight_decay) == (want["optimizer"], want["lr"], want["weight_decay"])
    assert tuned.train.epochs == Config().train.epochs  # only the optimizer changes
    assert _cfg("--model", "efficientnet-lite0", "--pretrained", "--lr", "1e-3").train.lr == 1e-3
    initd = _cfg("--init", "some-run")
    assert (initd.train.optimizer, initd.train.lr) == (FINETUNE["init"]["optimizer"], FINETUNE["init"]["lr"])


def test_naming_the_optimizer_drops_the_fine_tuning_defaults():
    # an lr chosen for AdamW would be far too small for SGD: the user's optimizer gets its own default lr
    cfg = _cfg("--model", "efficientnet-lite0", "--pretrained", "--optimizer", "sgd")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("sgd", Config().train.lr, Config().train.weight_decay)
